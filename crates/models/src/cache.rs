//! The Hugging Face cache layout, shared with diffusers and huggingface_hub:
//! `<root>/models--org--name/{refs/<revision>, blobs/<etag>, snapshots/<commit>/<path>}`.

use std::path::{Path, PathBuf};

use crate::catalog::CatalogModel;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
