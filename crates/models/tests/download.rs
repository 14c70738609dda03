//! Downloads against a real HTTP server on loopback that serves the Hub's URL layout
//! (`/<repo>/resolve/<rev>/<file>`, LFS files redirected to a blob URL, ETag, Range).

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use selfdiffusion_models::{
    verify, CatalogFile, CatalogModel, Defaults, Downloader, HubCache, LocalModels, ModelError,
};
use sha2::Digest;

const COMMIT: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9001122334";

/// A reader that yields `limit` bytes, then fails: the server drops the connection midway.
struct Cut {
    data: std::io::Cursor<Vec<u8>>,
    limit: usize,
}

impl Read for Cut {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.limit.saturating_sub(self.data.position() as usize);
        if left == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "cut",
            ));
        }
        let n = buf.len().min(left);
        self.data.read(&mut buf[..n])
    }
}

#[derive(Default)]
struct State {
    /// Requests seen: (method, url, range header).
    log: Vec<(String, String, Option<String>)>,
    /// Cut the next blob GET of this sha after half its bytes.
    cut_next: Option<String>,
}

struct Hub {
    url: String,
    state: Arc<Mutex<State>>,
    big: Vec<u8>,
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

impl Hub {
    /// Serves `org/tiny` at `main` (= COMMIT): a small config and a large LFS file.
    /// `corrupt` makes the blob's bytes differ from its advertised hash.
    fn start(corrupt: bool) -> Hub {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let config = br#"{"_class_name": "StableDiffusionPipeline"}"#.to_vec();
        let state = Arc::new(Mutex::new(State::default()));
        let (big2, st) = (big.clone(), state.clone());
        std::thread::spawn(move || {
            let big_sha = sha(&big2);
            for req in server.incoming_requests() {
                let method = req.method().to_string();
                let path = req.url().to_string();
                let range = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Range"))
                    .map(|h| h.value.to_string());
                st.lock()
                    .unwrap()
                    .log
                    .push((method.clone(), path.clone(), range.clone()));
                let h = |k: &str, v: &str| {
                    tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap()
                };
                let resolve = "/org/tiny/resolve/main/";
                let response = if let Some(file) = path.strip_prefix(resolve) {
                    match file {
                        "model_index.json" => tiny_http::Response::from_data(config.clone())
                            .with_header(h("ETag", "\"3f1e0a\""))
                            .with_header(h("X-Repo-Commit", COMMIT))
                            .boxed(),
                        "unet/weights.safetensors" => tiny_http::Response::empty(302)
                            .with_header(h("Location", &format!("/blobs/{big_sha}")))
                            .with_header(h("X-Linked-Etag", &format!("\"{big_sha}\"")))
                            .with_header(h("X-Linked-Size", &big2.len().to_string()))
                            .with_header(h("X-Repo-Commit", COMMIT))
                            .boxed(),
                        _ => tiny_http::Response::empty(404).boxed(),
                    }
                } else if path == format!("/blobs/{big_sha}") {
                    let mut body = big2.clone();
                    if corrupt {
                        body[1000] ^= 0xff;
                    }
                    let start = range
                        .as_deref()
                        .and_then(|r| r.strip_prefix("bytes="))
                        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
                    let cut = st.lock().unwrap().cut_next.take().is_some();
                    match start {
                        Some(s) => {
                            let part = body[s..].to_vec();
                            tiny_http::Response::from_data(part)
                                .with_status_code(206)
                                .with_header(h(
                                    "Content-Range",
                                    &format!("bytes {s}-{}/{}", body.len() - 1, body.len()),
                                ))
                                .boxed()
                        }
                        None if cut => {
                            let len = body.len();
                            tiny_http::Response::new(
                                200.into(),
                                vec![],
                                Box::new(Cut {
                                    data: std::io::Cursor::new(body),
                                    limit: len / 2,
                                }) as Box<dyn Read + Send>,
                                Some(len),
                                None,
                            )
                        }
                        None => tiny_http::Response::from_data(body).boxed(),
                    }
                } else {
                    tiny_http::Response::empty(404).boxed()
                };
                let _ = req.respond(response);
            }
        });
        Hub { url, state, big }
    }

    fn gets(&self) -> Vec<(String, Option<String>)> {
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|(m, _, _)| m == "GET")
            .map(|(_, p, r)| (p.clone(), r.clone()))
            .collect()
    }
}

fn model(files: &[&str]) -> CatalogModel {
    CatalogModel {
        id: "tiny".into(),
        name: "Tiny".into(),
        repo: "org/tiny".into(),
        revision: "main".into(),
        description: String::new(),
        files: files
            .iter()
            .map(|p| CatalogFile {
                path: (*p).into(),
                size: None,
                sha256: None,
            })
            .collect(),
        approx_bytes: 300_000,
        defaults: Defaults {
            width: 64,
            height: 64,
            steps: 4,
            guidance: 7.5,
            scheduler: "ddim".into(),
        },
    }
}

const FILES: &[&str] = &["model_index.json", "unet/weights.safetensors"];

#[test]
fn downloads_into_the_hub_cache_layout_and_does_not_fetch_twice() {
    let hub = Hub::start(false);
    let dir = tempfile::tempdir().unwrap();
    let downloader = Downloader::new(&hub.url, HubCache::new(dir.path()));
    let mut last = None;
    let snapshot = downloader
        .download(&model(FILES), &AtomicBool::new(false), &mut |p| {
            last = Some(p.clone())
        })
        .unwrap();
    let repo = dir.path().join("models--org--tiny");
    assert_eq!(snapshot, repo.join("snapshots").join(COMMIT));
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        COMMIT
    );
    assert_eq!(
        std::fs::read(snapshot.join("unet/weights.safetensors")).unwrap(),
        hub.big
    );
    assert!(repo.join("blobs").join(sha(&hub.big)).is_file());
    #[cfg(unix)]
    assert!(
        std::fs::symlink_metadata(snapshot.join("unet/weights.safetensors"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let last = last.unwrap();
    assert_eq!(last.bytes_done, last.bytes_total);
    assert!(verify(downloader.cache(), &model(FILES)).unwrap().is_ok());

    let before = hub.gets().len();
    downloader
        .download(&model(FILES), &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert_eq!(
        hub.gets().len(),
        before,
        "a complete snapshot is not fetched again"
    );
}

#[test]
fn a_download_cut_midway_resumes_with_a_range_request() {
    let hub = Hub::start(false);
    hub.state.lock().unwrap().cut_next = Some("big".into());
    let dir = tempfile::tempdir().unwrap();
    let downloader = Downloader::new(&hub.url, HubCache::new(dir.path()));
    let err = downloader
        .download(&model(FILES), &AtomicBool::new(false), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, ModelError::Transfer { .. }), "{err}");
    assert!(err.to_string().contains("resume"), "{err}");
    let partial = dir
        .path()
        .join("models--org--tiny/blobs")
        .join(format!("{}.incomplete", sha(&hub.big)));
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(kept > 0 && kept < hub.big.len() as u64, "kept {kept} bytes");

    let snapshot = downloader
        .download(&model(FILES), &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert_eq!(
        std::fs::read(snapshot.join("unet/weights.safetensors")).unwrap(),
        hub.big
    );
    let gets = hub.gets();
    let resumed = gets.last().unwrap();
    assert_eq!(
        resumed.1.as_deref(),
        Some(format!("bytes={kept}-").as_str()),
        "{gets:?}"
    );
    assert!(!partial.exists());
}

#[test]
fn a_corrupt_download_is_refused_and_discarded() {
    let hub = Hub::start(true);
    let dir = tempfile::tempdir().unwrap();
    let downloader = Downloader::new(&hub.url, HubCache::new(dir.path()));
    let err = downloader
        .download(&model(FILES), &AtomicBool::new(false), &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(err, ModelError::Mismatch { what: "sha256", .. }),
        "{err}"
    );
    let blobs: Vec<_> = std::fs::read_dir(dir.path().join("models--org--tiny/blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        blobs.iter().all(|b| b.to_string_lossy().len() != 64),
        "no blob under the hash name: {blobs:?}"
    );
}

#[test]
fn cancel_keeps_the_partial_file_for_later() {
    let hub = Hub::start(false);
    let dir = tempfile::tempdir().unwrap();
    let downloader = Downloader::new(&hub.url, HubCache::new(dir.path()));
    let cancel = AtomicBool::new(false);
    let err = downloader
        .download(&model(FILES), &cancel, &mut |p| {
            if p.file.starts_with("unet") && p.bytes_done > 100_000 {
                cancel.store(true, Ordering::Relaxed);
            }
        })
        .unwrap_err();
    assert!(matches!(err, ModelError::Cancelled), "{err}");
    let partial = dir
        .path()
        .join("models--org--tiny/blobs")
        .join(format!("{}.incomplete", sha(&hub.big)));
    assert!(partial.is_file());
    downloader
        .download(&model(FILES), &AtomicBool::new(false), &mut |_| {})
        .unwrap();
}

#[test]
fn offline_missing_files_and_full_disks_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let offline = Downloader::new(&format!("http://{closed}"), HubCache::new(dir.path()));
    let err = offline
        .download(&model(FILES), &AtomicBool::new(false), &mut |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("offline"), "{err}");

    let hub = Hub::start(false);
    let downloader = Downloader::new(&hub.url, HubCache::new(dir.path()));
    let err = downloader
        .download(&model(&["nope.json"]), &AtomicBool::new(false), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, ModelError::Http { status: 404, .. }), "{err}");

    let mut huge = model(FILES);
    huge.files[1].size = Some(u64::MAX / 4);
    let err = downloader
        .download(&huge, &AtomicBool::new(false), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, ModelError::DiskFull { .. }), "{err}");
}

#[test]
fn models_diffusers_already_downloaded_are_found_without_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("models--org--tiny/snapshots").join(COMMIT);
    for f in FILES {
        std::fs::create_dir_all(snapshot.join(f).parent().unwrap()).unwrap();
        std::fs::write(snapshot.join(f), b"x").unwrap();
    }
    std::fs::create_dir_all(dir.path().join("models--org--tiny/refs")).unwrap();
    std::fs::write(dir.path().join("models--org--tiny/refs/main"), COMMIT).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let downloader = Downloader::new(&format!("http://{closed}"), HubCache::new(dir.path()));
    assert_eq!(
        downloader
            .download(&model(FILES), &AtomicBool::new(false), &mut |_| {})
            .unwrap(),
        snapshot
    );
}

#[test]
fn import_accepts_diffusers_folders_and_explains_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalModels::new(dir.path().join("data/models.json"));
    let folder = dir.path().join("my-model");
    for c in ["unet", "vae", "text_encoder", "tokenizer", "scheduler"] {
        std::fs::create_dir_all(folder.join(c)).unwrap();
    }
    std::fs::write(
        folder.join("model_index.json"),
        r#"{"_class_name": "StableDiffusionPipeline"}"#,
    )
    .unwrap();
    let imported = registry.import(&folder).unwrap();
    assert_eq!(imported.id, "local:my-model");
    assert_eq!(
        registry.import(&folder).unwrap(),
        imported,
        "importing twice keeps one entry"
    );
    assert_eq!(registry.list().unwrap(), vec![imported]);

    std::fs::write(
        folder.join("model_index.json"),
        r#"{"_class_name": "FluxPipeline"}"#,
    )
    .unwrap();
    let err = registry.import(&folder).unwrap_err().to_string();
    assert!(
        err.contains("FluxPipeline")
            && err.contains("Stable Diffusion 1.x, 2.x, XL and their Turbo models"),
        "{err}"
    );
    let err = registry.import(dir.path()).unwrap_err().to_string();
    assert!(err.contains("model_index.json"), "{err}");
}
