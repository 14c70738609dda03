//! Consistency checks between the database and the files, and the safe repairs.

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::files::{remove_if_exists, write_atomic, TEMP_PREFIX};
use crate::images::{insert_row, sha256_hex, Origin, Prepared};
use crate::thumbs::{decode, thumbnail_jpeg};
use crate::Library;
use selfdiffusion_recipe::embedded_recipe;
use selfdiffusion_recipe::png_text::{read_text_chunks, RECIPE_KEY};

/// Name of the project that re-indexed images go to when their own project no longer exists.
pub const RECOVERED_PROJECT: &str = "Recovered images";

/// An image row whose file (or thumbnail) is missing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissingFile {
    /// The image id.
    pub image_id: i64,
    /// The missing library-relative path.
    pub path: String,
}

/// An image whose file no longer has the recorded hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HashMismatch {
    /// The image id.
    pub image_id: i64,
    /// Its library-relative path.
    pub path: String,
    /// The recorded SHA-256.
    pub expected: String,
    /// The SHA-256 of the file now.
    pub actual: String,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VerifyReport {
    /// Number of image rows checked.
    pub images_checked: usize,
    /// Rows whose image file is missing.
    pub missing_files: Vec<MissingFile>,
    /// Rows whose thumbnail is missing.
    pub missing_thumbnails: Vec<MissingFile>,
    /// Files under `images/` or `thumbs/` that no row claims.
    pub orphan_files: Vec<String>,
    /// Files whose content changed.
    pub hash_mismatches: Vec<HashMismatch>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.missing_files.is_empty()
            && self.missing_thumbnails.is_empty()
            && self.orphan_files.is_empty()
            && self.hash_mismatches.is_empty()
    }
}

/// What `repair` did, and what it left because fixing it would not be safe.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RepairReport {
    /// Ids of images re-indexed from orphan files.
    pub reindexed: Vec<i64>,
    /// Thumbnails made again.
    pub thumbnails_rebuilt: usize,
    /// Leftover temporary files and orphan thumbnails removed.
    pub removed: Vec<String>,
    /// What is still wrong (missing files and changed content need a person's decision).
    pub remaining: VerifyReport,
}

struct Row {
    id: i64,
    file: String,
    thumb: String,
    sha256: String,
}

/// Library-relative paths of all files two levels below `root/dir` (`dir/<project>/<file>`).
fn files_under(root: &Path, dir: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let top = root.join(dir);
    let Ok(projects) = std::fs::read_dir(&top) else {
        return Ok(out);
    };
    for project in projects {
        let project = project.ctx("read folder", &top)?;
        let project_name = project.file_name().to_string_lossy().into_owned();
        if !project.path().is_dir() {
            out.push(format!("{dir}/{project_name}"));
            continue;
        }
        for file in std::fs::read_dir(project.path()).ctx("read folder", &project.path())? {
            let file = file.ctx("read folder", &project.path())?;
            out.push(format!(
                "{dir}/{project_name}/{}",
                file.file_name().to_string_lossy()
            ));
        }
    }
    out.sort();
    Ok(out)
}

impl Library {
    fn rows(&self) -> Result<Vec<Row>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, file, thumb, sha256 FROM images ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok(Row {
                id: r.get(0)?,
                file: r.get(1)?,
                thumb: r.get(2)?,
                sha256: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Checks every row against its files (existence and hash) and every file against the rows.
    pub fn verify(&self) -> Result<VerifyReport> {
        let rows = self.rows()?;
        let mut report = VerifyReport {
            images_checked: rows.len(),
            ..VerifyReport::default()
        };
        let mut claimed = HashSet::new();
        for row in &rows {
            let path = self.path_of(&row.file);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let actual = sha256_hex(&bytes);
                    if actual != row.sha256 {
                        report.hash_mismatches.push(HashMismatch {
                            image_id: row.id,
                            path: row.file.clone(),
                            expected: row.sha256.clone(),
                            actual,
                        });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    report.missing_files.push(MissingFile {
                        image_id: row.id,
                        path: row.file.clone(),
                    })
                }
                Err(e) => return Err(Error::io("read", &path, e)),
            }
            if !self.path_of(&row.thumb).is_file() {
                report.missing_thumbnails.push(MissingFile {
                    image_id: row.id,
                    path: row.thumb.clone(),
                });
            }
            claimed.insert(row.file.as_str());
            claimed.insert(row.thumb.as_str());
        }
        for dir in ["images", "thumbs"] {
            for file in files_under(&self.root, dir)? {
                if !claimed.contains(file.as_str()) {
                    report.orphan_files.push(file);
                }
            }
        }
        Ok(report)
    }

    /// Fixes what is safe: re-indexes orphan images from their embedded metadata, removes
    /// leftover temporary files and orphan thumbnails, rebuilds missing thumbnails.
    pub fn repair(&self) -> Result<RepairReport> {
        let found = self.verify()?;
        let mut report = RepairReport::default();
        for orphan in &found.orphan_files {
            let file_name = orphan.rsplit('/').next().unwrap_or_default();
            if file_name.starts_with(TEMP_PREFIX) || orphan.starts_with("thumbs/") {
                remove_if_exists(&self.path_of(orphan))?;
                report.removed.push(orphan.clone());
            } else if let Some(id) = self.reindex(orphan)? {
                report.reindexed.push(id);
            }
        }
        for missing in &found.missing_thumbnails {
            let image = self.image(missing.image_id)?;
            let Ok(bytes) = std::fs::read(self.path_of(&image.summary.file)) else {
                continue;
            };
            let Ok(decoded) = decode(&image.summary.original_name, &bytes) else {
                continue;
            };
            write_atomic(
                &self.path_of(&missing.path),
                &thumbnail_jpeg(&image.summary.original_name, &decoded.image)?,
            )?;
            report.thumbnails_rebuilt += 1;
        }
        report.remaining = self.verify()?;
        tracing::info!(
            reindexed = report.reindexed.len(),
            thumbnails = report.thumbnails_rebuilt,
            removed = report.removed.len(),
            "repair finished"
        );
        Ok(report)
    }

    /// Adds a row for an orphan image file where it lies. `None` when it is not a readable image.
    fn reindex(&self, relative: &str) -> Result<Option<i64>> {
        let path = self.path_of(relative);
        let bytes = std::fs::read(&path).ctx("read", &path)?;
        let generated = read_text_chunks(&bytes)
            .iter()
            .any(|(k, _)| k == RECIPE_KEY);
        let recipe = embedded_recipe(&bytes).unwrap_or_default();
        let origin = if generated {
            Origin::Generated
        } else {
            Origin::Imported
        };
        let name = relative.rsplit('/').next().unwrap_or(relative);
        let Ok(prepared) = Prepared::verbatim(name, bytes, recipe, origin) else {
            return Ok(None);
        };
        let project_id = match relative.split('/').nth(1).and_then(|p| p.parse().ok()) {
            Some(id) if self.project(id).is_ok() => id,
            _ => match self.project_by_name(RECOVERED_PROJECT) {
                Ok(p) => p.id,
                Err(_) => {
                    self.create_project(
                        RECOVERED_PROJECT,
                        Some("Images found in the library folder without a project"),
                    )?
                    .id
                }
            },
        };
        let stem = name.rsplit_once('.').map(|(s, _)| s).unwrap_or(name);
        let thumb = format!("thumbs/{project_id}/{stem}.jpg");
        {
            let conn = self.conn();
            self.reserve(&conn, &[&thumb])?;
        }
        let result = (|| {
            write_atomic(&self.path_of(&thumb), &prepared.thumb)?;
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let id = insert_row(&tx, project_id, relative, &thumb, &prepared)?;
            Self::settle(&tx, &[&thumb])?;
            Self::touch_project(&tx, project_id)?;
            tx.commit()?;
            Ok(id)
        })();
        if result.is_err() {
            let _ = self.release(&[&thumb]);
        }
        result.map(Some)
    }
}
