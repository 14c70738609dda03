//! The inputs of img2img and inpainting runs (the image a run starts from, the painted mask),
//! kept by content in `inputs/<sha256>.<ext>` so that a recipe naming them by hash can be made
//! again. Each is written once, atomically, and never rewritten.

use std::path::PathBuf;

use image::ImageFormat;

use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::images::sha256_hex;
use crate::Library;

/// The folder of inputs inside the library.
const INPUTS: &str = "inputs";

/// The extensions inputs are kept under, by format.
const EXTENSIONS: [&str; 3] = ["png", "jpg", "webp"];

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
        if !path.is_file() {
            let dir = self.root().join(INPUTS);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("create folder", &dir, e))?;
            write_atomic(&path, bytes)?;
        }
        Ok(sha256)
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
