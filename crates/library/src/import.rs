//! Importing image files, folders and zip archives (including this app's exports).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::export::{Manifest, ManifestImage, INPUTS_ENTRY, MANIFEST_NAME};
use crate::images::{sha256_hex, Origin, Prepared};
use crate::Library;
use selfdiffusion_recipe::embedded_recipe;

/// Largest single file or archive entry that is imported.
const MAX_IMAGE_BYTES: u64 = 256 * 1024 * 1024;

/// What to do when an incoming image has the same name or content as one in the project.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnDuplicate {
    /// Leave the existing image and skip the incoming one.
    #[default]
    Skip,
    /// Import the incoming image beside the existing one.
    KeepBoth,
    /// Import the incoming image, then delete the existing one(s).
    Replace,
}

/// Options of an import.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct ImportOptions {
    /// The duplicate policy (by file name and by content hash).
    pub on_duplicate: OnDuplicate,
}

/// A file that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    /// The file or entry.
    pub name: String,
    /// Why it was skipped.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportReport {
    /// Ids of the images added.
    pub imported: Vec<i64>,
    /// Names skipped as duplicates.
    pub skipped_duplicates: Vec<String>,
    /// Names whose existing duplicates were replaced.
    pub replaced: Vec<String>,
    /// Files that are not images, are damaged, or could not be read.
    pub rejected: Vec<Rejected>,
    /// The import was cancelled; what is listed above was done, nothing else.
    pub cancelled: bool,
}

/// Progress of an import, reported after each file.
#[derive(Debug, Clone, Serialize)]
pub struct ImportProgress {
    /// Files handled so far.
    pub done: usize,
    /// Files in all.
    pub total: usize,
    /// The file just handled.
    pub current: String,
}

/// One file to import.
struct Candidate {
    name: String,
    source: Source,
}

enum Source {
    File(PathBuf),
    Zip {
        archive: usize,
        index: usize,
        meta: Option<Box<ManifestImage>>,
    },
    /// Found while collecting but not importable; the reason is reported.
    Refused(String),
}

fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| {
            matches!(
                e.to_ascii_lowercase().as_str(),
                "png" | "jpg" | "jpeg" | "webp"
            )
        })
        .unwrap_or(false)
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Opens an archive and refuses it whole if any entry could escape its folder.
fn open_archive(path: &Path) -> Result<zip::ZipArchive<File>> {
    let bad = |reason: String| Error::BadArchive {
        path: path.display().to_string(),
        reason,
    };
    let file = File::open(path).ctx("open", path)?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(|e| bad(e.to_string()))?;
        if entry.enclosed_name().is_none() {
            return Err(Error::UnsafeZipEntry(entry.name().to_owned()));
        }
    }
    Ok(archive)
}

fn read_manifest(archive: &mut zip::ZipArchive<File>) -> Option<Manifest> {
    let mut entry = archive.by_name(MANIFEST_NAME).ok()?;
    let mut text = String::new();
    entry.read_to_string(&mut text).ok()?;
    serde_json::from_str::<Manifest>(&text)
        .ok()
        .filter(Manifest::is_supported)
}

fn collect_folder(dir: &Path, out: &mut Vec<Candidate>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ctx("read folder", dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let name = display_name(&path);
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_folder(&path, out)?;
        } else if is_image_name(&path) {
            out.push(Candidate {
                name,
                source: Source::File(path),
            });
        } else {
            out.push(Candidate {
                name: path.display().to_string(),
                source: Source::Refused("not an image (PNG, JPEG and WebP are imported)".into()),
            });
        }
    }
    Ok(())
}

impl Library {
    /// Keeps the img2img and inpainting inputs an exported zip carries (its manifest's
    /// `inputs`), each only when its content matches the hash in its name.
    fn restore_inputs(
        &self,
        archive: &mut zip::ZipArchive<File>,
        inputs: &HashSet<String>,
        path: &Path,
    ) -> Result<()> {
        for name in inputs {
            let Some(sha) = name
                .strip_prefix(INPUTS_ENTRY)
                .and_then(|file| file.split_once('.'))
                .map(|(sha, _)| sha)
            else {
                continue;
            };
            let Ok(entry) = archive.by_name(name) else {
                continue;
            };
            if entry.size() > MAX_IMAGE_BYTES {
                tracing::warn!(entry = %name, "a kept input in the archive is too large; skipped");
                continue;
            }
            let mut bytes = Vec::new();
            let read = std::io::Read::read_to_end(
                &mut std::io::Read::take(entry, MAX_IMAGE_BYTES + 1),
                &mut bytes,
            );
            // An input that cannot be kept is skipped: the images still come in.
            let kept = match read {
                Ok(_) if sha256_hex(&bytes) == sha => self.keep_input(&bytes).map(|_| ()),
                Ok(_) => Err(Error::UnsupportedFile(format!(
                    "{name} (its hash does not match)"
                ))),
                Err(e) => Err(Error::BadArchive {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }),
            };
            if let Err(e) = kept {
                tracing::warn!(entry = %name, error = %e, "a kept input in the archive was skipped");
            }
        }
        Ok(())
    }

    /// Imports files, folders (recursively) and zip archives into a project.
    ///
    /// An archive with an entry that has an absolute path or `..` is refused whole before
    /// anything is imported. Files that are not images, or damaged, are reported and skipped.
    /// Each imported image is committed on its own, so cancelling keeps what was imported.
    pub fn import_paths(
        &self,
        project_id: i64,
        paths: &[PathBuf],
        options: ImportOptions,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(&ImportProgress),
    ) -> Result<ImportReport> {
        let _job = self.begin_job(project_id)?;
        let mut archives = Vec::new();
        let mut candidates = Vec::new();
        for path in paths {
            let meta = std::fs::metadata(path).ctx("read", path)?;
            if meta.is_dir() {
                collect_folder(path, &mut candidates)?;
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
            {
                let mut archive = open_archive(path)?;
                let manifest = read_manifest(&mut archive);
                let inputs: HashSet<String> = manifest
                    .as_ref()
                    .map(|m| m.inputs.iter().cloned().collect())
                    .unwrap_or_default();
                self.restore_inputs(&mut archive, &inputs, path)?;
                let by_path: HashMap<String, ManifestImage> = manifest
                    .map(|m| m.images.into_iter().map(|i| (i.path.clone(), i)).collect())
                    .unwrap_or_default();
                for index in 0..archive.len() {
                    let entry = archive.by_index_raw(index).map_err(|e| Error::BadArchive {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                    let entry_name = entry.name().to_owned();
                    if entry.is_dir() || entry_name == MANIFEST_NAME || inputs.contains(&entry_name)
                    {
                        continue;
                    }
                    let name = match by_path.get(&entry_name) {
                        Some(m) => m.original_name.clone(),
                        None => display_name(Path::new(&entry_name)),
                    };
                    candidates.push(Candidate {
                        name,
                        source: Source::Zip {
                            archive: archives.len(),
                            index,
                            meta: by_path.get(&entry_name).cloned().map(Box::new),
                        },
                    });
                }
                archives.push(archive);
            } else {
                candidates.push(Candidate {
                    name: display_name(path),
                    source: Source::File(path.clone()),
                });
            }
        }

        // Duplicates are judged against what the project held before this import, so a batch
        // (an exported project, a folder tree) comes in whole.
        let existing_until: i64 =
            self.conn()
                .query_row("SELECT COALESCE(MAX(id), 0) FROM images", [], |r| r.get(0))?;
        let mut report = ImportReport::default();
        let total = candidates.len();
        for (done, candidate) in candidates.into_iter().enumerate() {
            if cancel.load(Ordering::Relaxed) {
                report.cancelled = true;
                break;
            }
            let name = candidate.name.clone();
            match self.import_one(
                project_id,
                candidate,
                &mut archives,
                options.on_duplicate,
                existing_until,
            )? {
                Outcome::Imported(id) => report.imported.push(id),
                Outcome::Replaced(id) => {
                    report.imported.push(id);
                    report.replaced.push(name.clone());
                }
                Outcome::Duplicate => report.skipped_duplicates.push(name.clone()),
                Outcome::Rejected(reason) => report.rejected.push(Rejected {
                    name: name.clone(),
                    reason,
                }),
            }
            progress(&ImportProgress {
                done: done + 1,
                total,
                current: name,
            });
        }
        tracing::info!(
            project_id,
            imported = report.imported.len(),
            skipped = report.skipped_duplicates.len(),
            rejected = report.rejected.len(),
            "import finished"
        );
        Ok(report)
    }

    /// Imports one candidate. Problems with the file itself are an `Outcome::Rejected`;
    /// problems with the library (disk, database) are errors that stop the import.
    fn import_one(
        &self,
        project_id: i64,
        candidate: Candidate,
        archives: &mut [zip::ZipArchive<File>],
        on_duplicate: OnDuplicate,
        existing_until: i64,
    ) -> Result<Outcome> {
        let (bytes, meta) = match candidate.source {
            Source::Refused(reason) => return Ok(Outcome::Rejected(reason)),
            Source::File(path) => {
                let size = std::fs::metadata(&path).ctx("read", &path)?.len();
                if size > MAX_IMAGE_BYTES {
                    return Ok(Outcome::Rejected(format!(
                        "larger than {MAX_IMAGE_BYTES} bytes"
                    )));
                }
                (std::fs::read(&path).ctx("read", &path)?, None)
            }
            Source::Zip {
                archive,
                index,
                meta,
            } => {
                let mut entry = match archives[archive].by_index(index) {
                    Ok(e) => e,
                    Err(e) => {
                        return Ok(Outcome::Rejected(format!(
                            "cannot read from the archive: {e}"
                        )))
                    }
                };
                if entry.size() > MAX_IMAGE_BYTES {
                    return Ok(Outcome::Rejected(format!(
                        "larger than {MAX_IMAGE_BYTES} bytes"
                    )));
                }
                let mut bytes = Vec::with_capacity(entry.size() as usize);
                if let Err(e) = entry.read_to_end(&mut bytes) {
                    return Ok(Outcome::Rejected(format!(
                        "cannot read from the archive: {e}"
                    )));
                }
                (bytes, meta)
            }
        };
        let recipe = match &meta {
            Some(m) => m.recipe.clone(),
            None => embedded_recipe(&bytes).unwrap_or_default(),
        };
        let origin = meta.as_ref().map(|m| m.origin).unwrap_or(Origin::Imported);
        let mut prepared = match Prepared::verbatim(&candidate.name, bytes, recipe, origin) {
            Ok(p) => p,
            Err(e @ (Error::CorruptImage { .. } | Error::UnsupportedFile(_))) => {
                return Ok(Outcome::Rejected(e.to_string()))
            }
            Err(e) => return Err(e),
        };
        if let Some(m) = &meta {
            if m.sha256 != prepared.sha256 {
                return Ok(Outcome::Rejected(
                    "damaged in the archive: content does not match the manifest's hash".into(),
                ));
            }
            prepared.favorite = m.favorite;
            prepared.created_at = m.created_at;
        }

        let duplicates = self.duplicates_of(
            project_id,
            &prepared.original_name,
            &prepared.sha256,
            existing_until,
        )?;
        if duplicates.is_empty() || on_duplicate == OnDuplicate::KeepBoth {
            return Ok(Outcome::Imported(self.store(project_id, prepared)?));
        }
        match on_duplicate {
            OnDuplicate::Skip => Ok(Outcome::Duplicate),
            _ => {
                let id = self.store(project_id, prepared)?;
                self.delete_images(&duplicates)?;
                Ok(Outcome::Replaced(id))
            }
        }
    }

    /// Images of a project, up to id `until`, with the same original name or the same content.
    fn duplicates_of(
        &self,
        project_id: i64,
        name: &str,
        sha256: &str,
        until: i64,
    ) -> Result<Vec<i64>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id FROM images WHERE project_id = ?1 AND id <= ?4 AND (original_name = ?2 OR sha256 = ?3)",
        )?;
        let rows = stmt.query_map(params![project_id, name, sha256, until], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

enum Outcome {
    Imported(i64),
    Replaced(i64),
    Duplicate,
    Rejected(String),
}
