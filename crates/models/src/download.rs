//! Downloads from a Hugging Face endpoint into the hub cache: resumable (HTTP Range), checked
//! against size and SHA-256, with progress, cancellation and a free-disk check first.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, RANGE};
use reqwest::StatusCode;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cache::HubCache;
use crate::catalog::{CatalogFile, CatalogModel};
use crate::error::{IoPath, ModelError, Result};

/// Default Hub endpoint; `HF_ENDPOINT` overrides it.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Progress of a download.
#[derive(Debug, Clone, Serialize)]
pub struct DownloadProgress {
    /// The file being fetched.
    pub file: String,
    /// Bytes of all files done (including what was already there).
    pub bytes_done: u64,
    /// Bytes of all files.
    pub bytes_total: u64,
}

/// What the Hub says about one file before it is fetched.
struct Remote {
    url: String,
    commit: Option<String>,
    etag: String,
    size: Option<u64>,
    sha256: Option<String>,
}

/// Fetches catalog models into a hub cache.
pub struct Downloader {
    endpoint: String,
    cache: HubCache,
    head: Client,
    get: Client,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    Some(value.trim_start_matches("W/").trim_matches('"').to_owned())
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

fn hash_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).at(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// `blobs/<etag>.incomplete`: where a blob grows until it is complete and checked.
fn partial_path(blob: &Path) -> PathBuf {
    let mut name = blob.file_name().unwrap_or_default().to_os_string();
    name.push(".incomplete");
    blob.with_file_name(name)
}

/// Points `link` at `blob`: a relative symlink as huggingface_hub makes, else a copy.
fn link_snapshot(blob: &Path, link: &Path) -> Result<()> {
    let parent = link.parent().expect("snapshot paths have a parent");
    std::fs::create_dir_all(parent).at(parent)?;
    let _ = std::fs::remove_file(link);
    #[cfg(unix)]
    if std::os::unix::fs::symlink(relative_to(blob, parent), link).is_ok() {
        return Ok(());
    }
    std::fs::copy(blob, link).at(link)?;
    Ok(())
}

/// `target` as seen from folder `from`.
#[cfg(unix)]
fn relative_to(target: &Path, from: &Path) -> PathBuf {
    let t: Vec<_> = target.components().collect();
    let f: Vec<_> = from.components().collect();
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    let mut rel: PathBuf = (common..f.len()).map(|_| "..").collect();
    rel.extend(t[common..].iter().map(|c| c.as_os_str()));
    rel
}

impl Downloader {
    /// A downloader for `endpoint` into `cache`.
    pub fn new(endpoint: &str, cache: HubCache) -> Self {
        let build = |redirects| {
            Client::builder()
                .redirect(redirects)
                .connect_timeout(std::time::Duration::from_secs(15))
                .user_agent(concat!("selfdiffusion/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("an HTTP client with the built-in TLS configuration builds")
        };
        Downloader {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            cache,
            head: build(reqwest::redirect::Policy::none()),
            get: build(reqwest::redirect::Policy::limited(10)),
        }
    }

    /// `HF_ENDPOINT` (else the Hub) into the cache `HF_HUB_CACHE` / `HF_HOME` point to.
    pub fn from_env() -> Self {
        let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| DEFAULT_ENDPOINT.to_owned());
        Self::new(&endpoint, HubCache::from_env())
    }

    /// The cache it writes to.
    pub fn cache(&self) -> &HubCache {
        &self.cache
    }

    fn transport(&self, url: &str, e: reqwest::Error) -> ModelError {
        if e.is_connect() || e.is_timeout() {
            ModelError::Offline {
                endpoint: self.endpoint.clone(),
            }
        } else {
            ModelError::Transfer {
                url: url.to_owned(),
                reason: e.to_string(),
            }
        }
    }

    fn status_error(url: &str, status: StatusCode) -> ModelError {
        let hint = match status.as_u16() {
            401 | 403 => ": the repo needs a login or accepting its licence on the Hub",
            404 => ": no such file or revision (the catalog may need an update)",
            _ => "",
        };
        ModelError::Http {
            url: url.to_owned(),
            status: status.as_u16(),
            hint,
        }
    }

    /// Asks the Hub (HEAD, no redirects) for a file's commit, ETag, size and LFS hash.
    fn inspect(&self, model: &CatalogModel, file: &CatalogFile) -> Result<Remote> {
        let url = format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint, model.repo, model.revision, file.path
        );
        let response = self
            .head
            .head(&url)
            .send()
            .map_err(|e| self.transport(&url, e))?;
        let status = response.status();
        if !(status.is_success() || status.is_redirection()) {
            return Err(Self::status_error(&url, status));
        }
        let h = response.headers();
        let etag = header(h, "x-linked-etag")
            .or_else(|| header(h, "etag"))
            .ok_or_else(|| ModelError::Transfer {
                url: url.clone(),
                reason: "the server sent no ETag".into(),
            })?;
        let size = header(h, "x-linked-size")
            .or_else(|| {
                status
                    .is_success()
                    .then(|| header(h, "content-length"))
                    .flatten()
            })
            .and_then(|s| s.parse().ok());
        Ok(Remote {
            commit: header(h, "x-repo-commit"),
            sha256: file
                .sha256
                .clone()
                .or_else(|| is_sha256(&etag).then(|| etag.clone())),
            size: file.size.or(size),
            etag,
            url,
        })
    }

    /// Downloads every file of `model` that the cache lacks and returns the snapshot folder.
    /// An interrupted or cancelled download resumes where it stopped.
    pub fn download(
        &self,
        model: &CatalogModel,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(&DownloadProgress),
    ) -> Result<PathBuf> {
        if let Some(dir) = self.cache.complete_snapshot(model) {
            return Ok(dir);
        }
        let remotes = model
            .files
            .iter()
            .map(|f| self.inspect(model, f))
            .collect::<Result<Vec<_>>>()?;
        let repo_dir = self.cache.repo_dir(&model.repo);
        let blobs = repo_dir.join("blobs");
        std::fs::create_dir_all(&blobs).at(&blobs)?;
        let have = |r: &Remote| {
            let blob = blobs.join(&r.etag);
            if blob.is_file() {
                file_len(&blob)
            } else {
                file_len(&partial_path(&blob))
            }
        };
        let total: u64 = remotes.iter().map(|r| r.size.unwrap_or(0)).sum();
        let needed: u64 = remotes
            .iter()
            .map(|r| r.size.unwrap_or(0).saturating_sub(have(r)))
            .sum();
        let available = fs4::available_space(&blobs).at(&blobs)?;
        if needed > available {
            return Err(ModelError::DiskFull {
                dir: blobs,
                needed,
                available,
            });
        }
        let commit = remotes
            .iter()
            .find_map(|r| r.commit.clone())
            .unwrap_or_else(|| model.revision.clone());
        let snapshot = repo_dir.join("snapshots").join(&commit);
        let mut done: u64 = 0;
        for (file, remote) in model.files.iter().zip(&remotes) {
            let blob = blobs.join(&remote.etag);
            if !blob.is_file() {
                self.fetch(&file.path, remote, &blob, cancel, &mut |n| {
                    progress(&DownloadProgress {
                        file: file.path.clone(),
                        bytes_done: done + n,
                        bytes_total: total,
                    })
                })?;
            }
            done += file_len(&blob);
            progress(&DownloadProgress {
                file: file.path.clone(),
                bytes_done: done,
                bytes_total: total,
            });
            link_snapshot(&blob, &snapshot.join(&file.path))?;
        }
        if commit != model.revision {
            let refs = repo_dir.join("refs");
            std::fs::create_dir_all(&refs).at(&refs)?;
            std::fs::write(refs.join(&model.revision), &commit).at(&refs)?;
        }
        tracing::info!(model = %model.id, snapshot = %snapshot.display(), "model downloaded");
        Ok(snapshot)
    }

    /// Fetches one file into `blob`, resuming `<blob>.incomplete` with a Range request, and
    /// checks its size and hash before it takes the blob's name.
    fn fetch(
        &self,
        name: &str,
        remote: &Remote,
        blob: &Path,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let partial = partial_path(blob);
        let mut offset = file_len(&partial);
        if remote.size.is_some_and(|s| offset > s) {
            std::fs::remove_file(&partial).at(&partial)?;
            offset = 0;
        }
        let mut request = self.get.get(&remote.url);
        if offset > 0 {
            request = request.header(RANGE, format!("bytes={offset}-"));
        }
        let mut response = request.send().map_err(|e| self.transport(&remote.url, e))?;
        let status = response.status();
        let (append, body) = match status {
            StatusCode::PARTIAL_CONTENT => (true, true),
            StatusCode::RANGE_NOT_SATISFIABLE if Some(offset) == remote.size => (true, false),
            s if s.is_success() => (false, true),
            s => return Err(Self::status_error(&remote.url, s)),
        };
        let mut out = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&partial)
            .at(&partial)?;
        let mut written = if append { offset } else { 0 };
        if body {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                if cancel.load(Ordering::Relaxed) {
                    out.sync_all().at(&partial)?;
                    return Err(ModelError::Cancelled);
                }
                let n = response.read(&mut buf).map_err(|e| ModelError::Transfer {
                    url: remote.url.clone(),
                    reason: e.to_string(),
                })?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).at(&partial)?;
                written += n as u64;
                progress(written);
            }
        }
        out.sync_all().at(&partial)?;
        drop(out);
        if let Some(size) = remote.size {
            if written < size {
                return Err(ModelError::Transfer {
                    url: remote.url.clone(),
                    reason: format!("the connection closed after {written} of {size} bytes"),
                });
            }
            if written > size {
                std::fs::remove_file(&partial).at(&partial)?;
                return Err(ModelError::Mismatch {
                    file: name.to_owned(),
                    what: "size",
                    expected: size.to_string(),
                    actual: written.to_string(),
                });
            }
        }
        if let Some(expected) = &remote.sha256 {
            let actual = hash_file(&partial)?;
            if !actual.eq_ignore_ascii_case(expected) {
                std::fs::remove_file(&partial).at(&partial)?;
                return Err(ModelError::Mismatch {
                    file: name.to_owned(),
                    what: "sha256",
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        std::fs::rename(&partial, blob).at(blob)?;
        Ok(())
    }
}

/// Result of checking a model's files on disk.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Files that are missing.
    pub missing: Vec<String>,
    /// Files whose content does not match their known hash.
    pub corrupt: Vec<String>,
    /// Files present (and, where a hash is known, intact).
    pub ok: Vec<String>,
}

impl VerifyReport {
    /// True when every file is present and intact.
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty()
    }
}

/// Checks a model's snapshot: every file present, and every file whose hash is known (from the
/// catalog, or from the blob it links to being named by its SHA-256) hashing to it.
pub fn verify(cache: &HubCache, model: &CatalogModel) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let Some(dir) = cache.snapshot(&model.repo, &model.revision) else {
        report.missing = model.files.iter().map(|f| f.path.clone()).collect();
        return Ok(report);
    };
    for file in &model.files {
        let path = dir.join(&file.path);
        if !path.is_file() {
            report.missing.push(file.path.clone());
            continue;
        }
        let blob_name = std::fs::canonicalize(&path)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        let expected = file
            .sha256
            .clone()
            .or_else(|| blob_name.filter(|n| is_sha256(n)));
        match expected {
            Some(sha) if !hash_file(&path)?.eq_ignore_ascii_case(&sha) => {
                report.corrupt.push(file.path.clone())
            }
            _ => report.ok.push(file.path.clone()),
        }
    }
    Ok(report)
}
