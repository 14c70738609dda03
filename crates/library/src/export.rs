//! Exporting a project or a selection to a zip of images plus `manifest.json`.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::error::{Error, IoContext, Result};
use crate::files::{remove_if_exists, sync_dir};
use crate::images::{sha256_hex, ImageDetail, Origin};
use crate::{now_ms, Library};
use selfdiffusion_recipe::Recipe;

/// Name of the manifest entry in an exported zip.
pub const MANIFEST_NAME: &str = "manifest.json";
/// The folder of kept inputs inside an exported zip.
pub(crate) const INPUTS_ENTRY: &str = "inputs/";
/// Value of the manifest's `format` field.
const MANIFEST_FORMAT: &str = "selfdiffusion-export";
/// Manifest version this build writes and reads.
const MANIFEST_VERSION: u32 = 1;

/// The `manifest.json` of an exported zip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `selfdiffusion-export`.
    pub format: String,
    /// Manifest version.
    pub version: u32,
    /// When the export was made, ms since the epoch.
    pub exported_at: i64,
    /// The project the images came from.
    pub project: ManifestProject,
    /// The images, in the order they were added.
    pub images: Vec<ManifestImage>,
    /// The entries of the img2img and inpainting inputs the images' recipes name
    /// (`inputs/<sha256>.<ext>`), so the recipes can be remade where the zip is imported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
}

impl Manifest {
    /// Whether this build understands the manifest.
    pub fn is_supported(&self) -> bool {
        self.format == MANIFEST_FORMAT && self.version == MANIFEST_VERSION
    }
}

/// The project part of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestProject {
    /// Project name.
    pub name: String,
    /// Project description.
    pub description: String,
}

/// One image in a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestImage {
    /// Entry path inside the zip.
    pub path: String,
    /// The name it had in the library.
    pub original_name: String,
    /// SHA-256 of the entry, hex.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Pixel width.
    pub width: u32,
    /// Pixel height.
    pub height: u32,
    /// Generated or imported.
    pub origin: Origin,
    /// Favourite mark.
    pub favorite: bool,
    /// When it was added, ms since the epoch.
    pub created_at: i64,
    /// The full recipe.
    pub recipe: Recipe,
}

/// Progress of an export, reported after each image.
#[derive(Debug, Clone, Serialize)]
pub struct ExportProgress {
    /// Images written so far.
    pub done: usize,
    /// Images in all.
    pub total: usize,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// The zip's final path.
    pub path: PathBuf,
    /// Number of images in it.
    pub images: usize,
    /// Size of the zip in bytes.
    pub bytes: u64,
}

/// A zip entry name from a user-visible file name: no folders, no control characters, an image
/// extension, unique without case among `taken`.
fn entry_name(original: &str, ext: &str, taken: &mut HashSet<String>) -> String {
    let clean: String = original
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let clean = clean.trim_start_matches('.').trim();
    let (stem, ext) = match clean.rsplit_once('.') {
        Some((stem, e))
            if matches!(
                e.to_ascii_lowercase().as_str(),
                "png" | "jpg" | "jpeg" | "webp"
            ) =>
        {
            (stem, e)
        }
        _ => (clean, ext),
    };
    let stem = if stem.is_empty() { "image" } else { stem };
    let mut candidate = format!("images/{stem}.{ext}");
    let mut n = 2;
    while !taken.insert(candidate.to_lowercase()) {
        candidate = format!("images/{stem} ({n}).{ext}");
        n += 1;
    }
    candidate
}

impl Library {
    /// Exports a project, or the selected images of it, to a zip at `dest`.
    ///
    /// The zip is written to a temporary file beside `dest` and renamed at the end, so no
    /// truncated archive ever stands under the final name. Images are stored uncompressed.
    pub fn export_zip(
        &self,
        project_id: i64,
        selection: Option<&[i64]>,
        dest: &Path,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(&ExportProgress),
    ) -> Result<ExportReport> {
        let _job = self.begin_job(project_id)?;
        let project = self.project(project_id)?;
        let mut images = self.project_images(project_id)?;
        if let Some(ids) = selection {
            if let Some(missing) = ids
                .iter()
                .find(|id| !images.iter().any(|i| i.summary.id == **id))
            {
                return Err(Error::ImageNotFound(*missing));
            }
            images.retain(|i| ids.contains(&i.summary.id));
        }
        let file_name = dest.file_name().ok_or_else(|| {
            Error::io(
                "write export to",
                dest,
                std::io::ErrorKind::InvalidInput.into(),
            )
        })?;
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let temp = parent.join(format!(
            ".{}.part-{}",
            file_name.to_string_lossy(),
            uuid::Uuid::new_v4().simple()
        ));
        let file = File::create(&temp).ctx("write export to", dest)?;

        let written = self.write_zip(file, &project, &images, cancel, progress);
        let finished = written.and_then(|file| {
            file.sync_all().ctx("write export to", dest)?;
            drop(file);
            std::fs::rename(&temp, dest).ctx("write export to", dest)?;
            sync_dir(parent)
        });
        if let Err(e) = finished {
            let _ = remove_if_exists(&temp);
            return Err(e);
        }
        let bytes = std::fs::metadata(dest).ctx("read", dest)?.len();
        tracing::info!(project_id, images = images.len(), bytes, "export finished");
        Ok(ExportReport {
            path: dest.to_path_buf(),
            images: images.len(),
            bytes,
        })
    }

    fn write_zip<W: Write + Seek>(
        &self,
        out: W,
        project: &crate::Project,
        images: &[ImageDetail],
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(&ExportProgress),
    ) -> Result<W> {
        let zip_err = |e: zip::result::ZipError| Error::Io {
            context: "cannot write the export archive".into(),
            source: std::io::Error::other(e),
        };
        let mut zip = ZipWriter::new(out);
        let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        let mut taken = HashSet::new();
        let mut manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            exported_at: now_ms(),
            project: ManifestProject {
                name: project.name.clone(),
                description: project.description.clone(),
            },
            images: Vec::with_capacity(images.len()),
            inputs: Vec::new(),
        };
        for (done, image) in images.iter().enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let s = &image.summary;
            let path = self.path_of(&s.file);
            let bytes = std::fs::read(&path).ctx("read", &path)?;
            if sha256_hex(&bytes) != image.sha256 {
                return Err(Error::DamagedImage {
                    id: s.id,
                    path: s.file.clone(),
                });
            }
            let name = entry_name(&s.original_name, &s.format, &mut taken);
            zip.start_file(name.as_str(), stored).map_err(zip_err)?;
            zip.write_all(&bytes).map_err(|e| Error::Io {
                context: "cannot write the export archive".into(),
                source: e,
            })?;
            manifest.images.push(ManifestImage {
                path: name,
                original_name: s.original_name.clone(),
                sha256: image.sha256.clone(),
                bytes: s.bytes,
                width: s.width,
                height: s.height,
                origin: s.origin,
                favorite: s.favorite,
                created_at: s.created_at,
                recipe: image.recipe.clone(),
            });
            progress(&ExportProgress {
                done: done + 1,
                total: images.len(),
            });
        }
        // The inputs the recipes name and this library keeps, once each.
        let named = images
            .iter()
            .filter_map(|i| i.recipe.source.as_ref())
            .flat_map(|s| std::iter::once(s.image_sha256.clone()).chain(s.mask_sha256.clone()));
        let mut seen = HashSet::new();
        for sha in named {
            if !seen.insert(sha.clone()) {
                continue;
            }
            let Ok(path) = self.input_path(&sha) else {
                continue;
            };
            let bytes = std::fs::read(&path).ctx("read", &path)?;
            let ext = path
                .extension()
                .map_or_else(String::new, |e| e.to_string_lossy().into_owned());
            let name = format!("{INPUTS_ENTRY}{sha}.{ext}");
            zip.start_file(name.as_str(), stored).map_err(zip_err)?;
            zip.write_all(&bytes).map_err(|e| Error::Io {
                context: "cannot write the export archive".into(),
                source: e,
            })?;
            manifest.inputs.push(name);
        }
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest always serialises");
        zip.start_file(MANIFEST_NAME, SimpleFileOptions::default())
            .map_err(zip_err)?;
        zip.write_all(&json).map_err(|e| Error::Io {
            context: "cannot write the export archive".into(),
            source: e,
        })?;
        zip.finish().map_err(zip_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_flat_and_unique() {
        let mut taken = HashSet::new();
        assert_eq!(entry_name("cat.png", "png", &mut taken), "images/cat.png");
        assert_eq!(
            entry_name("CAT.png", "png", &mut taken),
            "images/CAT (2).png"
        );
        assert_eq!(
            entry_name("../../etc/passwd", "png", &mut taken),
            "images/_.._etc_passwd.png"
        );
        assert_eq!(
            entry_name("photo.JPEG", "jpg", &mut taken),
            "images/photo.JPEG"
        );
        assert_eq!(entry_name("", "jpg", &mut taken), "images/image.jpg");
        assert_eq!(
            entry_name("a\u{7}b.webp", "webp", &mut taken),
            "images/a_b.webp"
        );
    }
}
