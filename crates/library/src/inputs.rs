//! The inputs of img2img and inpainting runs (the image a run starts from, the painted mask),
//! kept by content in `inputs/<sha256>.<ext>` so that a recipe naming them by hash can be made
//! again. Each is written once, atomically, and never rewritten; those no image's recipe names
//! are pruned once they are old enough not to belong to a run still being set up.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use image::ImageFormat;

use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::images::sha256_hex;
use crate::Library;

/// The folder of inputs inside the library.
const INPUTS: &str = "inputs";

/// The extensions inputs are kept under, by format.
const EXTENSIONS: [&str; 3] = ["png", "jpg", "webp"];

/// What [`Library::prune_inputs`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunedInputs {
    /// Input files removed.
    pub files: usize,
    /// Their size in bytes.
    pub bytes: u64,
}

impl Library {
    /// Keeps `bytes` (a PNG, JPEG or WebP file, as given) as an input and returns its SHA-256
    /// (hex). Keeping the same bytes again changes nothing.
    pub fn keep_input(&self, bytes: &[u8]) -> Result<String> {
        let ext = match image::guess_format(bytes) {
            Ok(ImageFormat::Png) => "png",
            Ok(ImageFormat::Jpeg) => "jpg",
            Ok(ImageFormat::WebP) => "webp",
            _ => return Err(Error::UnsupportedFile("the input".into())),
        };
        let sha256 = sha256_hex(bytes);
        let path = self.root().join(INPUTS).join(format!("{sha256}.{ext}"));
        if path.is_file() {
            // Kept again: young again, so a prune leaves it to the run it is kept for.
            std::fs::File::options()
                .append(true)
                .open(&path)
                .and_then(|f| f.set_modified(SystemTime::now()))
                .map_err(|e| Error::io("touch", &path, e))?;
        } else {
            let dir = self.root().join(INPUTS);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("create folder", &dir, e))?;
            write_atomic(&path, bytes)?;
        }
        Ok(sha256)
    }

    /// Removes the kept inputs that no image's recipe names and that were last kept more than
    /// `min_age` ago (a younger one may be set on a run not yet made). Files of other names are
    /// left alone.
    pub fn prune_inputs(&self, min_age: Duration) -> Result<PrunedInputs> {
        let named = self.named_inputs()?;
        let dir = self.root().join(INPUTS);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PrunedInputs::default())
            }
            Err(e) => return Err(Error::io("list", &dir, e)),
        };
        let now = SystemTime::now();
        let mut pruned = PrunedInputs::default();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", &dir, e))?;
            let path = entry.path();
            let Some((sha256, ext)) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split_once('.'))
            else {
                continue;
            };
            if !EXTENSIONS.contains(&ext) || sha256.len() != 64 || named.contains(sha256) {
                continue;
            }
            let meta = entry.metadata().map_err(|e| Error::io("read", &path, e))?;
            let age = meta
                .modified()
                .ok()
                .and_then(|kept| now.duration_since(kept).ok())
                .unwrap_or_default();
            if !meta.is_file() || age < min_age {
                continue;
            }
            std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
            pruned.files += 1;
            pruned.bytes += meta.len();
        }
        Ok(pruned)
    }

    /// The SHA-256 of every input an image's recipe names (image and mask).
    fn named_inputs(&self) -> Result<HashSet<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT json_extract(recipe, '$.source.image_sha256'), \
                    json_extract(recipe, '$.source.mask_sha256') \
             FROM images WHERE json_type(recipe, '$.source') = 'object'",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok([
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<String>>(1)?,
            ])
        })?;
        let mut named = HashSet::new();
        for row in rows {
            named.extend(row?.into_iter().flatten());
        }
        Ok(named)
    }

    /// The file of the input whose SHA-256 is `sha256`.
    pub fn input_path(&self, sha256: &str) -> Result<PathBuf> {
        let well_formed = sha256.len() == 64
            && sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if well_formed {
            for ext in EXTENSIONS {
                let path = self.root().join(INPUTS).join(format!("{sha256}.{ext}"));
                if path.is_file() {
                    return Ok(path);
                }
            }
        }
        Err(Error::InputNotFound(sha256.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(side: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        image::DynamicImage::new_rgb8(side, side)
            .write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        bytes
    }

    #[test]
    fn inputs_are_kept_once_by_content_and_found_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let library = Library::open(dir.path()).unwrap();
        let bytes = png(4);
        let sha = library.keep_input(&bytes).unwrap();
        assert_eq!(sha, sha256_hex(&bytes));
        assert_eq!(library.keep_input(&bytes).unwrap(), sha);
        let path = library.input_path(&sha).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(path.extension().unwrap(), "png");
        // Inputs are not images of a project: verify does not see them.
        assert!(library.verify().unwrap().is_clean());
    }

    /// Makes the file of input `sha` look last kept `age` ago.
    fn age(library: &Library, sha: &str, age: Duration) {
        let path = library.input_path(sha).unwrap();
        std::fs::File::options()
            .append(true)
            .open(path)
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
    }

    #[test]
    fn inputs_no_recipe_names_are_pruned_once_old_enough() {
        use selfdiffusion_recipe::{Recipe, SourceImage};
        let dir = tempfile::tempdir().unwrap();
        let library = Library::open(dir.path()).unwrap();
        let [image, mask, orphan, young, rekept] =
            [4, 5, 6, 7, 8].map(|side| library.keep_input(&png(side)).unwrap());
        let day = Duration::from_secs(86_400);
        for sha in [&image, &mask, &orphan, &rekept] {
            age(&library, sha, 2 * day);
        }
        // Kept again today: young again.
        library.keep_input(&png(8)).unwrap();
        // An inpainted image names the image and the mask it started from.
        let project = library.create_project("p", None).unwrap();
        let recipe = Recipe {
            prompt: "a kite".into(),
            source: Some(SourceImage {
                image_sha256: image.clone(),
                strength: 0.8,
                mask_sha256: Some(mask.clone()),
                outpaint: None,
                paste_back: None,
            }),
            ..Recipe::default()
        };
        let rgb = vec![0u8; 4 * 4 * 3];
        let pixels = crate::Pixels {
            width: 4,
            height: 4,
            rgb: &rgb,
        };
        let added = library
            .add_generated(project.id, pixels, &recipe, None)
            .unwrap();
        // Not ours: left alone whatever its age.
        let stray = dir.path().join(INPUTS).join("notes.txt");
        std::fs::write(&stray, "mine").unwrap();

        let pruned = library.prune_inputs(day).unwrap();
        assert_eq!(pruned.files, 1);
        assert_eq!(pruned.bytes, png(6).len() as u64);
        assert!(library.input_path(&orphan).is_err(), "the old orphan went");
        for kept in [&image, &mask, &young, &rekept] {
            library.input_path(kept).unwrap();
        }
        assert!(stray.is_file());
        assert_eq!(library.prune_inputs(day).unwrap(), PrunedInputs::default());

        // Once the image is deleted, its inputs are orphans too.
        library.delete_images(&[added.summary.id]).unwrap();
        assert_eq!(library.prune_inputs(day).unwrap().files, 2);
        assert!(library.input_path(&image).is_err() && library.input_path(&mask).is_err());
        // With no age asked, the young ones go as well; an empty library prunes nothing.
        assert_eq!(library.prune_inputs(Duration::ZERO).unwrap().files, 2);
        let empty = tempfile::tempdir().unwrap();
        let fresh = Library::open(empty.path()).unwrap();
        assert_eq!(fresh.prune_inputs(day).unwrap(), PrunedInputs::default());
    }

    #[test]
    fn unknown_malformed_and_non_image_inputs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let library = Library::open(dir.path()).unwrap();
        let other = sha256_hex(b"never kept");
        for sha in [other.as_str(), "../library.sqlite3", "ABC"] {
            let err = library.input_path(sha).unwrap_err().to_string();
            assert!(err.contains("no kept input"), "{err}");
        }
        assert!(matches!(
            library.keep_input(b"plain text"),
            Err(Error::UnsupportedFile(_))
        ));
    }
}
