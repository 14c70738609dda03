//! The LoRA library: LoRA files the user imported, kept in one folder by name, so a prompt's
//! `<lora:name:0.8>` finds its file. The engine checks a file is a LoRA before it is imported.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{IoPath, ModelError, Result};

/// An imported LoRA.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoraEntry {
    /// Its name, as `<lora:name:weight>` gives it: the file name without `.safetensors`.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The folder of imported LoRAs.
#[derive(Debug, Clone)]
pub struct LoraLibrary {
    dir: PathBuf,
}

const EXT: &str = "safetensors";

impl LoraLibrary {
    /// The library in `dir` (created on first import).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LoraLibrary { dir: dir.into() }
    }

    /// The library in the OS data dir (`SelfDiffusion/loras`).
    pub fn default_location() -> Option<Self> {
        dirs::data_dir().map(|d| Self::new(d.join("SelfDiffusion").join("loras")))
    }

    /// Every imported LoRA, by name.
    pub fn list(&self) -> Result<Vec<LoraEntry>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).at(&self.dir),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.at(&self.dir)?.path();
            if path.extension().is_some_and(|e| e == EXT) {
                let bytes = std::fs::metadata(&path).at(&path)?.len();
                if let Some(name) = path.file_stem().and_then(|s| s.to_str()) {
                    if !name.starts_with('.') {
                        out.push(LoraEntry {
                            name: name.to_owned(),
                            path: path.clone(),
                            bytes,
                        });
                    }
                }
            }
        }
        out.sort_by_key(|e| e.name.to_lowercase());
        Ok(out)
    }

    /// The file of the LoRA called `name` (any case).
    pub fn resolve(&self, name: &str) -> Result<PathBuf> {
        let all = self.list()?;
        if let Some(entry) = all
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(name.trim()))
        {
            return Ok(entry.path.clone());
        }
        let known = if all.is_empty() {
            " (the LoRA library is empty: import one first)".to_owned()
        } else {
            let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
            format!("; imported: {}", names.join(", "))
        };
        Err(ModelError::UnknownLora {
            name: name.to_owned(),
            known,
        })
    }

    /// Copies the LoRA `file` into the library under its file name (atomically: a crash leaves
    /// the whole file or none). Importing the same file twice is a no-op; a different file with a
    /// name already taken is refused.
    pub fn import(&self, file: &Path) -> Result<LoraEntry> {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty() && !s.starts_with('.'))
            .ok_or_else(|| ModelError::NotAModel {
                path: file.to_path_buf(),
                reason: "a LoRA needs a file name (it becomes the name prompts use)".into(),
            })?;
        if file.extension().is_none_or(|e| e != EXT) {
            return Err(ModelError::NotAModel {
                path: file.to_path_buf(),
                reason: "only .safetensors LoRA files are imported".into(),
            });
        }
        let bytes = std::fs::read(file).at(file)?;
        let target = self.dir.join(format!("{name}.{EXT}"));
        if let Some(existing) = self
            .list()?
            .into_iter()
            .find(|e| e.name.eq_ignore_ascii_case(name))
        {
            let same = std::fs::read(&existing.path).at(&existing.path)? == bytes;
            return if same {
                Ok(existing)
            } else {
                Err(ModelError::LoraExists(existing.name))
            };
        }
        selfdiffusion_files::write_atomic(&target, &bytes, selfdiffusion_files::Access::Default)
            .at(&target)?;
        Ok(LoraEntry {
            name: name.to_owned(),
            path: target,
            bytes: bytes.len() as u64,
        })
    }

    /// Removes the LoRA called `name`.
    pub fn remove(&self, name: &str) -> Result<()> {
        let path = self.resolve(name)?;
        std::fs::remove_file(&path).at(&path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_list_resolve_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let lib = LoraLibrary::new(dir.path().join("loras"));
        assert!(lib.list().unwrap().is_empty());
        let err = lib.resolve("brass").unwrap_err().to_string();
        assert!(err.contains("library is empty"), "{err}");

        let src = dir.path().join("Brass.safetensors");
        std::fs::write(&src, b"lora bytes").unwrap();
        let entry = lib.import(&src).unwrap();
        assert_eq!((entry.name.as_str(), entry.bytes), ("Brass", 10));
        assert_eq!(
            lib.import(&src).unwrap(),
            entry,
            "the same file again is a no-op"
        );
        assert_eq!(lib.resolve("brass").unwrap(), entry.path);

        let other = dir.path().join("other").join("brass.safetensors");
        std::fs::create_dir_all(other.parent().unwrap()).unwrap();
        std::fs::write(&other, b"other bytes").unwrap();
        assert!(matches!(lib.import(&other), Err(ModelError::LoraExists(_))));
        let pickle = dir.path().join("x.ckpt");
        std::fs::write(&pickle, b"PK").unwrap();
        assert!(lib.import(&pickle).is_err());

        let err = lib.resolve("fog").unwrap_err().to_string();
        assert!(err.contains("imported: Brass"), "{err}");
        lib.remove("BRASS").unwrap();
        assert!(lib.list().unwrap().is_empty());
    }
}
