//! A child process adds, imports and exports in a loop and is killed at random points; after
//! each kill the library must reopen consistent with every image it reported saved intact.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::{png, recipe};
use selfdiffusion_library::{ImportOptions, Library, OnDuplicate};

const WORKER_ENV: &str = "SELFDIFFUSION_CRASH_WORKER_LIBRARY";
const ROUNDS: usize = 60;

/// Tiny deterministic generator for kill delays.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The child's work: runs until killed. Started by `killed_at_random_points_loses_nothing`.
#[test]
#[ignore = "run as a child process by killed_at_random_points_loses_nothing"]
fn crash_worker() {
    let root = PathBuf::from(std::env::var(WORKER_ENV).expect("worker needs its library path"));
    let lib = Library::open(&root).unwrap();
    let project = match lib.project_by_name("Crash") {
        Ok(p) => p,
        Err(_) => lib.create_project("Crash", None).unwrap(),
    };
    let inbox = root.parent().unwrap().join("inbox");
    let export = root.parent().unwrap().join("export.zip");
    let no_cancel = AtomicBool::new(false);
    for i in 0u64.. {
        let seed = (std::process::id() as u64).wrapping_mul(31).wrapping_add(i);
        match i % 4 {
            0 | 1 => {
                let img = lib
                    .add_image(project.id, &png(seed as u8), &recipe("crash", seed), None)
                    .unwrap();
                println!("saved {} {}", img.summary.id, img.sha256);
            }
            2 => {
                let report = lib
                    .import_paths(
                        project.id,
                        std::slice::from_ref(&inbox),
                        ImportOptions {
                            on_duplicate: OnDuplicate::KeepBoth,
                        },
                        &no_cancel,
                        &mut |_| {},
                    )
                    .unwrap();
                for id in report.imported {
                    println!("saved {id} {}", lib.image(id).unwrap().sha256);
                }
            }
            _ => {
                lib.export_zip(project.id, None, &export, &no_cancel, &mut |_| {})
                    .unwrap();
            }
        }
    }
}

fn check_export(path: &Path) {
    if !path.exists() {
        return;
    }
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap())
        .expect("a zip under the final name is always complete");
    let mut manifest = String::new();
    archive
        .by_name("manifest.json")
        .unwrap()
        .read_to_string(&mut manifest)
        .unwrap();
    let manifest: selfdiffusion_library::Manifest = serde_json::from_str(&manifest).unwrap();
    for image in &manifest.images {
        let mut bytes = Vec::new();
        archive
            .by_name(&image.path)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        assert_eq!(bytes.len() as u64, image.bytes);
    }
}

#[test]
fn killed_at_random_points_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lib");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    for i in 0..3u8 {
        std::fs::write(inbox.join(format!("in{i}.png")), png(200 + i)).unwrap();
    }
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut saved: Vec<(i64, String)> = Vec::new();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_worker",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WORKER_ENV, &root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 + rng.next() % 180));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        for line in out.lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("saved ") {
                let (id, sha) = rest.split_once(' ').unwrap();
                saved.push((id.parse().unwrap(), sha.to_owned()));
            }
        }

        let lib = Library::open(&root).unwrap();
        let report = lib.verify().unwrap();
        assert!(report.is_clean(), "round {round}: {report:?}");
        for (id, sha) in &saved {
            let image = lib
                .image(*id)
                .unwrap_or_else(|e| panic!("round {round}: saved image {id} lost: {e}"));
            assert_eq!(&image.sha256, sha);
            let bytes = std::fs::read(lib.path_of(&image.summary.file)).unwrap();
            assert_eq!(
                &selfdiffusion_library_sha(&bytes),
                sha,
                "round {round}: image {id} damaged"
            );
        }
        check_export(&dir.path().join("export.zip"));
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the crash test is bounded in time"
        );
    }
    assert!(
        saved.len() >= ROUNDS,
        "the worker made progress ({} images saved)",
        saved.len()
    );
}

fn selfdiffusion_library_sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
