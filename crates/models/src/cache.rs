//! The Hugging Face cache layout, shared with diffusers and huggingface_hub:
//! `<root>/models--org--name/{refs/<revision>, blobs/<etag>, snapshots/<commit>/<path>}`.

use std::path::{Path, PathBuf};

use crate::catalog::CatalogModel;
use crate::error::{IoPath, Result};

/// A Hugging Face hub cache folder.
#[derive(Debug, Clone, PartialEq)]
pub struct HubCache {
    root: PathBuf,
}

fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit())
}

impl HubCache {
    /// The cache at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HubCache { root: root.into() }
    }

    /// The cache huggingface_hub would use: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`.
    pub fn from_env() -> Self {
        let root = std::env::var_os("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
            .or_else(|| dirs::home_dir().map(|h| h.join(".cache").join("huggingface").join("hub")))
            .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"));
        HubCache { root }
    }

    /// The cache folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `models--org--name` for a repo.
    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The commit a revision points to, if the cache knows it.
    pub fn commit_of(&self, repo: &str, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_owned());
        }
        let text = std::fs::read_to_string(self.repo_dir(repo).join("refs").join(revision)).ok()?;
        Some(text.trim().to_owned()).filter(|c| !c.is_empty())
    }

    /// The snapshot folder of a revision, if the cache has one.
    pub fn snapshot(&self, repo: &str, revision: &str) -> Option<PathBuf> {
        let commit = self.commit_of(repo, revision)?;
        let dir = self.repo_dir(repo).join("snapshots").join(commit);
        dir.is_dir().then_some(dir)
    }

    /// The snapshot of a catalog model, if every one of its files is there.
    pub fn complete_snapshot(&self, model: &CatalogModel) -> Option<PathBuf> {
        let dir = self.snapshot(&model.repo, &model.revision)?;
        model
            .files
            .iter()
            .all(|f| dir.join(&f.path).is_file())
            .then_some(dir)
    }
}

impl HubCache {
    /// Deletes a catalog model's files from the cache and returns the bytes freed: its snapshot
    /// entries, then each blob no other snapshot of the repo still points to (the cache is
    /// shared with diffusers, whose other files of the repo stay). Links go first, so a crash
    /// midway leaves the model simply not installed, never a snapshot pointing at nothing.
    pub fn remove(&self, model: &CatalogModel) -> Result<u64> {
        let Some(dir) = self.snapshot(&model.repo, &model.revision) else {
            return Ok(0);
        };
        let mut blobs = Vec::new();
        let mut freed = 0;
        for file in &model.files {
            let path = dir.join(&file.path);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                if let Ok(blob) = std::fs::canonicalize(&path) {
                    blobs.push(blob);
                }
            } else {
                freed += meta.len();
            }
            std::fs::remove_file(&path).at(&path)?;
        }
        let still_used = linked_blobs(&self.repo_dir(&model.repo).join("snapshots"));
        for blob in blobs {
            if still_used.contains(&blob) {
                continue;
            }
            if let Ok(meta) = std::fs::metadata(&blob) {
                std::fs::remove_file(&blob).at(&blob)?;
                freed += meta.len();
            }
        }
        remove_empty_dirs(&dir);
        Ok(freed)
    }
}

/// The blobs that links under `dir` point to.
fn linked_blobs(dir: &Path) -> std::collections::HashSet<PathBuf> {
    let mut out = std::collections::HashSet::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => out.extend(linked_blobs(&path)),
            Ok(t) if t.is_symlink() => out.extend(std::fs::canonicalize(&path).ok()),
            _ => {}
        }
    }
    out
}

/// Removes `dir`'s empty subfolders, and `dir` itself when nothing is left in it.
fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&entry.path());
            }
        }
    }
    // Fails, as it should, while anything is left.
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn revisions_resolve_through_refs_and_commits_directly() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HubCache::new(dir.path());
        let repo_dir = cache.repo_dir("org/model");
        assert!(repo_dir.ends_with("models--org--model"));
        let commit = "0123456789abcdef0123456789abcdef01234567";
        std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
        std::fs::write(repo_dir.join("refs/main"), format!("{commit}\n")).unwrap();
        assert_eq!(
            cache.snapshot("org/model", "main"),
            None,
            "no snapshot folder yet"
        );
        std::fs::create_dir_all(repo_dir.join("snapshots").join(commit)).unwrap();
        assert_eq!(
            cache.snapshot("org/model", "main"),
            Some(repo_dir.join("snapshots").join(commit))
        );
        assert_eq!(
            cache.snapshot("org/model", commit),
            Some(repo_dir.join("snapshots").join(commit))
        );
        assert_eq!(cache.snapshot("org/model", "v2"), None);
    }

    #[cfg(unix)]
    #[test]
    fn removing_a_model_keeps_blobs_other_files_still_use() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HubCache::new(dir.path());
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let repo = cache.repo_dir("org/model");
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), commit).unwrap();
        let snapshot = repo.join("snapshots").join(commit);
        std::fs::create_dir_all(snapshot.join("unet")).unwrap();
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        let blob = |name: &str, bytes: usize| {
            std::fs::write(repo.join("blobs").join(name), vec![1u8; bytes]).unwrap();
        };
        let link = |blob: &str, path: &str| {
            let up = if path.contains('/') {
                "../../../"
            } else {
                "../../"
            };
            std::os::unix::fs::symlink(format!("{up}blobs/{blob}"), snapshot.join(path)).unwrap();
        };
        blob("only-ours", 100);
        blob("shared", 10);
        blob("theirs", 1000);
        link("only-ours", "unet/model.fp16.safetensors");
        link("shared", "model_index.json");
        // Files of the same repo that diffusers fetched: the catalog does not list them.
        link("shared", "README.md");
        link("theirs", "unet/model.safetensors");
        let model = CatalogModel {
            id: "m".into(),
            name: "M".into(),
            repo: "org/model".into(),
            revision: "main".into(),
            description: String::new(),
            files: ["model_index.json", "unet/model.fp16.safetensors"]
                .map(|p| crate::catalog::CatalogFile {
                    path: p.into(),
                    size: None,
                    sha256: None,
                })
                .to_vec(),
            approx_bytes: 0,
            defaults: Catalog::builtin().default_model().defaults.clone(),
        };
        assert!(cache.complete_snapshot(&model).is_some());

        assert_eq!(
            cache.remove(&model).unwrap(),
            100,
            "only the unshared blob is freed"
        );
        assert_eq!(cache.complete_snapshot(&model), None);
        for kept in ["shared", "theirs"] {
            assert!(repo.join("blobs").join(kept).is_file(), "{kept}");
        }
        assert!(!repo.join("blobs/only-ours").exists());
        assert!(
            snapshot.join("README.md").is_file(),
            "their files still resolve"
        );
        assert!(snapshot.join("unet/model.safetensors").is_file());
        assert_eq!(cache.remove(&model).unwrap(), 0, "nothing left to remove");
    }
}
