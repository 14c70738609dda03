//! `selfdiffusion-cli models` with a private data dir and Hugging Face cache.

#[path = "../../engine/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};

fn cli(home: &Path, args: &[&str], endpoint: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_selfdiffusion-cli"))
        .args(args)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("HF_HOME", home.join("hf"))
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_HUB_CACHE")
        .output()
        .unwrap()
}

#[test]
fn import_list_generate_and_clear_errors_offline() {
    let home = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let offline = format!("http://{closed}");
    let model = home.path().join("tiny-model");
    common::tiny_model(&model);

    let imported = cli(
        home.path(),
        &["--json", "models", "import", model.to_str().unwrap()],
        &offline,
    );
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let list: serde_json::Value =
        serde_json::from_slice(&cli(home.path(), &["--json", "models", "list"], &offline).stdout)
            .unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["sd-1.5", "sd-2.1", "sd-turbo", "local:tiny-model"]);
    assert!(list[0]["installed"].is_null());
    assert!(list[3]["installed"].is_string());

    let out = home.path().join("out");
    let generated = cli(
        home.path(),
        &[
            "generate",
            "a cat",
            "--model",
            "local:tiny-model",
            "--steps",
            "2",
            "--width",
            "64",
            "--height",
            "64",
            "--seed",
            "1",
            "--out",
            out.to_str().unwrap(),
        ],
        &offline,
    );
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    assert!(out.join("1.png").is_file());

    let download = cli(home.path(), &["models", "download", "sd-turbo"], &offline);
    assert!(!download.status.success());
    assert!(String::from_utf8_lossy(&download.stderr).contains("offline"));
    let not_yet = cli(
        home.path(),
        &[
            "generate",
            "x",
            "--model",
            "sd-1.5",
            "--out",
            out.to_str().unwrap(),
        ],
        &offline,
    );
    assert!(String::from_utf8_lossy(&not_yet.stderr).contains("models download sd-1.5"));
    let verify = cli(home.path(), &["models", "verify", "sd-1.5"], &offline);
    assert!(!verify.status.success());
    let unknown = cli(home.path(), &["models", "download", "sdxl"], &offline);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown model \"sdxl\""));
}
