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
    assert_eq!(
        ids,
        [
            "sd-1.5",
            "sd-2.1",
            "sd-turbo",
            "sdxl-1.0",
            "sdxl-turbo",
            "local:tiny-model"
        ]
    );
    assert!(list[0]["installed"].is_null());
    assert!(list[5]["installed"].is_string());

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

#[test]
fn a_checkpoint_and_loras_imported_once_are_used_by_name() {
    let fixture = match common::fixture() {
        Ok(d) => d,
        Err(msg) => {
            eprintln!("skipped: {msg}");
            return;
        }
    };
    let shared = fixture.parent().unwrap();
    let checkpoint = shared.join("tiny-sd15-single-file/tiny-sd15.safetensors");
    let kohya = shared.join("tiny-sd15-lora/lora/kohya_style.safetensors");
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| cli(home.path(), args, "http://127.0.0.1:9");
    let ok = |out: &Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let config = fixture.join("model");

    // A checkpoint is used in place, with the folder of its configs.
    let imported = ok(&run(&[
        "--json",
        "models",
        "import",
        checkpoint.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]));
    let model: serde_json::Value = serde_json::from_str(&imported).unwrap();
    assert_eq!(model["id"], "local:tiny-sd15");
    // Imported once: again (with the built-in configs by default) gives the same model.
    let again: serde_json::Value = serde_json::from_str(&ok(&run(&[
        "--json",
        "models",
        "import",
        checkpoint.to_str().unwrap(),
    ])))
    .unwrap();
    assert_eq!(again["id"], "local:tiny-sd15");
    // A LoRA is not a checkpoint, and a checkpoint is not a LoRA: both refused, nothing kept.
    let lora_as_model = run(&[
        "models",
        "import",
        kohya.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&lora_as_model.stderr).contains("is a LoRA"));
    let model_as_lora = run(&["loras", "import", checkpoint.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&model_as_lora.stderr).contains("is a checkpoint, not a LoRA"));
    assert_eq!(ok(&run(&["--json", "loras", "list"])).trim(), "[]");

    ok(&run(&["loras", "import", kohya.to_str().unwrap()]));
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&run(&["--json", "loras", "list"]))).unwrap();
    assert_eq!(listed[0]["name"], "kohya_style");

    // The prompt names the LoRA; the model is the imported checkpoint's id.
    let out = home.path().join("out");
    let generated = ok(&run(&[
        "generate",
        "a red cat <lora:kohya_style:0.7>",
        "--model",
        "local:tiny-sd15",
        "--steps",
        "2",
        "--width",
        "64",
        "--height",
        "64",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]));
    let png = std::fs::read(generated.trim()).unwrap();
    let recipe = selfdiffusion_recipe::embedded_recipe(&png).unwrap();
    assert_eq!(
        recipe.prompt, "a red cat",
        "the tag is not sent to the model"
    );
    assert_eq!(
        recipe.extra["user_prompt"],
        "a red cat <lora:kohya_style:0.7>"
    );
    assert_eq!(
        (recipe.loras[0].name.as_str(), recipe.loras[0].weight),
        ("kohya_style", 0.7)
    );
    let unknown = run(&[
        "generate",
        "a cat <lora:nope:1>",
        "--model",
        "local:tiny-sd15",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("imported: kohya_style"));
    ok(&run(&["loras", "remove", "kohya_style"]));
}
