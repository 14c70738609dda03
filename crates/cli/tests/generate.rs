//! `selfdiffusion-cli generate` on a tiny random model built by the test.

#[path = "../../engine/tests/common/mod.rs"]
mod common;

use std::process::Command;

use selfdiffusion_recipe::embedded_recipe;

/// A quick run: 3 steps at 64×64.
const SMALL: &[&str] = &["--steps", "3", "--width", "64", "--height", "64"];

fn generate(
    model: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_selfdiffusion-cli"))
        .args(["generate", "a red cat", "--negative", "blue"])
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn writes_pngs_with_recipes_and_the_same_seed_gives_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-model");
    common::tiny_model(&model);
    let out = dir.path().join("out");

    let run = generate(
        &model,
        &out,
        &[
            SMALL,
            &[
                "--seed",
                "7",
                "--count",
                "2",
                "--scheduler",
                "euler_a",
                "--json",
                "--device",
                "cpu",
            ],
        ]
        .concat(),
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(report["scheduler"], "euler_a");
    let first = std::fs::read(images[0]["path"].as_str().unwrap()).unwrap();
    let recipe = embedded_recipe(&first).unwrap();
    assert_eq!(recipe.prompt, "a red cat");
    assert_eq!(recipe.negative_prompt, "blue");
    assert_eq!(recipe.seed, Some(7));
    assert_eq!(recipe.steps, Some(3));
    assert_eq!(recipe.scheduler.as_deref(), Some("euler_a"));
    assert_eq!(recipe.model.as_deref(), Some("tiny-model"));
    assert_eq!(recipe.backend.as_deref(), Some("local"));
    assert_eq!(images[1]["seed"], 8);

    // The second image alone, from its own seed, is the same file.
    let again = generate(
        &model,
        &out,
        &[SMALL, &["--seed", "8", "--scheduler", "euler_a", "--json"]].concat(),
    );
    assert!(again.status.success());
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    let remade = std::fs::read(report["images"][0]["path"].as_str().unwrap()).unwrap();
    assert_eq!(
        remade,
        std::fs::read(images[1]["path"].as_str().unwrap()).unwrap()
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    common::tiny_model(&model);
    let out = dir.path().join("out");
    let mut cases: Vec<(&[&str], &str)> = vec![
        (
            &["--steps", "0", "--width", "64", "--height", "64"],
            "steps must be between 1 and 150",
        ),
        (&["--width", "65"], "width must be a multiple of 8"),
        (
            &["--scheduler", "plms"],
            "valid schedulers: ddim, euler, euler_a, dpmpp_2m_karras",
        ),
    ];
    if !cfg!(feature = "cuda") {
        cases.push((&["--device", "cuda"], "no CUDA support"));
    }
    for (args, expected) in &cases {
        let run = generate(&model, &out, args);
        assert!(!run.status.success());
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let missing = generate(&dir.path().join("nope"), &out, SMALL);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("model_index.json"));
}

/// The pixels of a PNG.
fn pixels(path: &std::path::Path) -> Vec<u8> {
    image::open(path).unwrap().into_rgb8().into_raw()
}

#[test]
fn a_single_file_checkpoint_with_its_config_gives_the_folder_image() {
    let fixture = match common::fixture() {
        Ok(d) => d,
        Err(msg) => {
            eprintln!("skipped: {msg}");
            return;
        }
    };
    let folder = fixture.join("model");
    let file = fixture
        .parent()
        .unwrap()
        .join("tiny-sd15-single-file/tiny-sd15.safetensors");
    let dir = tempfile::tempdir().unwrap();
    let args = [SMALL, &["--seed", "3", "--device", "cpu"]].concat();
    let config = ["--config", folder.to_str().unwrap()];

    let from_folder = generate(&folder, &dir.path().join("folder"), &args);
    assert!(
        from_folder.status.success(),
        "{}",
        String::from_utf8_lossy(&from_folder.stderr)
    );
    let from_file = generate(
        &file,
        &dir.path().join("file"),
        &[&args[..], &config].concat(),
    );
    assert!(
        from_file.status.success(),
        "{}",
        String::from_utf8_lossy(&from_file.stderr)
    );
    let written = |run: &std::process::Output| {
        std::path::PathBuf::from(String::from_utf8_lossy(&run.stdout).trim())
    };
    assert_eq!(pixels(&written(&from_file)), pixels(&written(&from_folder)));
    let recipe = embedded_recipe(&std::fs::read(written(&from_file)).unwrap()).unwrap();
    assert_eq!(recipe.model.as_deref(), Some("tiny-sd15"));

    // Without --config the built-in SD 1.5 configs are used: the tiny file does not fit them.
    let without = generate(&file, &dir.path().join("no-config"), &args);
    assert!(!without.status.success());
    let err = String::from_utf8_lossy(&without.stderr);
    assert!(
        err.contains("built-in configs") && err.contains("shape mismatch"),
        "{err}"
    );
    let other_family = generate(
        &file,
        &dir.path().join("xl-config"),
        &[&args[..], &["--config", "sdxl"]].concat(),
    );
    assert!(String::from_utf8_lossy(&other_family.stderr).contains(
        "is a Stable Diffusion 1.x checkpoint; the sdxl configs are for Stable Diffusion XL"
    ));
    let misplaced = generate(
        &folder,
        &dir.path().join("misplaced"),
        &[&args[..], &config].concat(),
    );
    assert!(!misplaced.status.success());
    assert!(
        String::from_utf8_lossy(&misplaced.stderr).contains("goes with a single-file checkpoint")
    );
    assert!(
        !dir.path().join("no-config").exists()
            || std::fs::read_dir(dir.path().join("no-config"))
                .unwrap()
                .next()
                .is_none(),
        "nothing written for a refused run"
    );
}

#[test]
fn a_single_file_checkpoint_with_two_loras_records_them_in_the_recipe() {
    let fixture = match common::fixture() {
        Ok(d) => d,
        Err(msg) => {
            eprintln!("skipped: {msg}");
            return;
        }
    };
    let shared = fixture.parent().unwrap();
    let file = shared.join("tiny-sd15-single-file/tiny-sd15.safetensors");
    let kohya = shared.join("tiny-sd15-lora/lora/kohya_style.safetensors");
    let peft = shared.join("tiny-sd15-lora/lora/peft_style.safetensors");
    let dir = tempfile::tempdir().unwrap();
    let config = fixture.join("model");
    let base = [
        SMALL,
        &[
            "--seed",
            "3",
            "--device",
            "cpu",
            "--config",
            config.to_str().unwrap(),
        ],
    ]
    .concat();
    let kohya_arg = format!("{}:0.7", kohya.display());
    let peft_arg = format!("{}:-0.4", peft.display());
    let with = generate(
        &file,
        &dir.path().join("with"),
        &[&base[..], &["--lora", &kohya_arg, "--lora", &peft_arg]].concat(),
    );
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    let without = generate(&file, &dir.path().join("without"), &base);
    assert!(
        without.status.success(),
        "{}",
        String::from_utf8_lossy(&without.stderr)
    );
    let written = |run: &std::process::Output| {
        std::path::PathBuf::from(String::from_utf8_lossy(&run.stdout).trim())
    };
    assert_ne!(
        pixels(&written(&with)),
        pixels(&written(&without)),
        "the LoRAs change the image"
    );

    let png = std::fs::read(written(&with)).unwrap();
    let recipe = embedded_recipe(&png).unwrap();
    let loras: Vec<(String, f64, usize)> = recipe
        .loras
        .iter()
        .map(|l| {
            (
                l.name.clone(),
                l.weight,
                l.hash.as_ref().map_or(0, |h| h.len()),
            )
        })
        .collect();
    assert_eq!(
        loras,
        [
            ("kohya_style".to_owned(), 0.7, 12),
            ("peft_style".to_owned(), -0.4, 12)
        ]
    );
    let parameters = selfdiffusion_recipe::png_text::read_text_chunks(&png)
        .into_iter()
        .find(|(k, _)| k == "parameters")
        .unwrap()
        .1;
    assert!(
        parameters.contains("<lora:kohya_style:0.7> <lora:peft_style:-0.4>"),
        "{parameters}"
    );
    assert!(parameters.contains("Lora hashes: "), "{parameters}");

    // A checkpoint given as a LoRA is refused before anything is written.
    let wrong = generate(
        &file,
        &dir.path().join("wrong"),
        &[&base[..], &["--lora", file.to_str().unwrap()]].concat(),
    );
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("is a checkpoint, not a LoRA"));
}
