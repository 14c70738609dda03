//! The CLI binary against a temp library.

use std::path::Path;
use std::process::{Command, Output};

fn cli(lib: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_selfdiffusion-cli"))
        .arg("--library")
        .arg(lib)
        .args(args)
        .env_remove("SELFDIFFUSION_LIBRARY")
        .output()
        .unwrap()
}

fn ok_json(lib: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = cli(lib, &all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn png_file(path: &Path, shade: u8) {
    let img = image::RgbImage::from_pixel(8, 8, image::Rgb([shade, 0, 0]));
    img.save(path).unwrap();
}

#[test]
fn projects_import_export_verify_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    let created = ok_json(
        &lib,
        &["projects", "create", "  Moon ", "--description", "craters"],
    );
    assert_eq!(created["name"], "Moon");
    let id = created["id"].as_i64().unwrap().to_string();

    let dup = cli(&lib, &["projects", "create", "MOON"]);
    assert_eq!(dup.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let bad = cli(&lib, &["projects", "create", "a/b"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid project name"));

    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    png_file(&src.join("a.png"), 10);
    png_file(&src.join("b.png"), 20);
    std::fs::write(src.join("c.txt"), "text").unwrap();
    let report = ok_json(
        &lib,
        &["import", "--project", "moon", src.to_str().unwrap()],
    );
    assert_eq!(report["imported"].as_array().unwrap().len(), 2);
    assert_eq!(report["rejected"].as_array().unwrap().len(), 1);
    let again = ok_json(
        &lib,
        &[
            "import",
            "--project",
            &id,
            "--on-duplicate",
            "skip",
            src.join("a.png").to_str().unwrap(),
        ],
    );
    assert_eq!(again["skipped_duplicates"][0], "a.png");

    let list = ok_json(&lib, &["projects", "list"]);
    assert_eq!(list[0]["image_count"], 2);

    let zip = dir.path().join("moon.zip");
    let exported = ok_json(
        &lib,
        &[
            "export",
            "--project",
            "Moon",
            "--out",
            zip.to_str().unwrap(),
        ],
    );
    assert_eq!(exported["images"], 2);
    ok_json(&lib, &["projects", "create", "Copy"]);
    let back = ok_json(
        &lib,
        &["import", "--project", "Copy", zip.to_str().unwrap()],
    );
    assert_eq!(back["imported"].as_array().unwrap().len(), 2);

    let renamed = ok_json(&lib, &["projects", "rename", &id, "--name", "Mars"]);
    assert_eq!(renamed["name"], "Mars");
    assert_eq!(renamed["description"], "craters");
    assert_eq!(
        ok_json(&lib, &["verify"])["missing_files"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // A missing file makes verify fail with status 1.
    let image_dir = lib.join("images").join(&id);
    let victim = std::fs::read_dir(&image_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(victim).unwrap();
    let verify = cli(&lib, &["verify"]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("1 missing file"));

    ok_json(&lib, &["projects", "delete", "Mars"]);
    let missing = cli(&lib, &["projects", "delete", "Mars"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no project named \"Mars\""));
    assert_eq!(
        ok_json(&lib, &["projects", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
