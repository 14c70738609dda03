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

/// `generate` with the img2img fixture's prompt and settings (DDIM, guidance 7.5, no negative).
fn generate_fixture(
    model: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_selfdiffusion-cli"))
        .args([
            "generate",
            "a photograph of an astronaut riding a horse on mars",
            "--scheduler",
            "ddim",
            "--guidance",
            "7.5",
            "--device",
            "cpu",
            "--json",
        ])
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn img2img_and_inpaint_from_the_command_line_match_diffusers() {
    let (fixture, sd15) = match (
        common::named_fixture("tiny-sd15-img2img"),
        common::fixture(),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(msg), _) | (_, Err(msg)) => {
            eprintln!("skipped: {msg}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let inputs = fixture.join("inputs");
    let reference = fixture.join("reference");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let runs = [
        (
            "img2img",
            sd15.join("model"),
            vec![
                "--steps".to_owned(),
                "5".to_owned(),
                "--strength".to_owned(),
                "0.6".to_owned(),
            ],
        ),
        (
            "inpaint",
            sd15.join("model"),
            vec![
                "--steps".to_owned(),
                "4".to_owned(),
                "--strength".to_owned(),
                "0.75".to_owned(),
                "--mask".to_owned(),
                path(&inputs.join("mask.png")),
            ],
        ),
        (
            "inpaint9",
            fixture.join("model-inpaint9"),
            vec![
                "--steps".to_owned(),
                "4".to_owned(),
                "--mask".to_owned(),
                path(&inputs.join("mask.png")),
                "--latents".to_owned(),
                path(&sd15.join("reference/init_latents.safetensors")),
            ],
        ),
    ];
    for (name, model, args) in runs {
        let noise = path(&reference.join(format!("{name}_noise.safetensors")));
        let mut extra = vec![
            "--init-image".to_owned(),
            path(&inputs.join("init_image.png")),
            "--noise".to_owned(),
            noise,
        ];
        extra.extend(args);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let run = generate_fixture(&model, &dir.path().join(name), &extra);
        assert!(
            run.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        let written = std::path::PathBuf::from(report["images"][0]["path"].as_str().unwrap());
        let ours = pixels(&written);
        // diffusers' image in 0..1, rounded to 8 bits (`image.png` shows it 4× larger).
        let outputs = common::load_tensors(&reference.join(name).join("outputs.safetensors"));
        let theirs: Vec<u8> = (&outputs["image"] * 255.0)
            .unwrap()
            .round()
            .unwrap()
            .to_dtype(candle_core::DType::U8)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst <= 1, "{name}: pixels differ by up to {worst}");
        let recipe = embedded_recipe(&std::fs::read(&written).unwrap()).unwrap();
        let source = recipe.source.expect("the recipe records the init image");
        assert_eq!(source.image_sha256.len(), 64);
        assert_eq!(source.mask_sha256.is_some(), name != "img2img");
        let text = String::from_utf8_lossy(&std::fs::read(&written).unwrap()).into_owned();
        assert!(
            text.contains(&format!("Denoising strength: {}", source.strength)),
            "{name}: the A1111 parameters name the strength"
        );
    }
}

#[test]
fn bad_image_inputs_are_clear_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    common::tiny_model(&model);
    let out = dir.path().join("out");
    let not_image = dir.path().join("notes.png");
    std::fs::write(&not_image, b"these are not pixels").unwrap();
    let truncated = dir.path().join("half.png");
    let mut png = Vec::new();
    image::DynamicImage::new_rgb8(64, 64)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    std::fs::write(&truncated, &png[..png.len() / 2]).unwrap();
    let good = dir.path().join("good.png");
    std::fs::write(&good, &png).unwrap();
    let p = |path: &std::path::Path| path.to_str().unwrap().to_owned();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--init-image".into(), p(&not_image)],
            "not a PNG, JPEG or WebP image",
        ),
        (vec!["--init-image".into(), p(&truncated)], "truncated"),
        (
            vec![
                "--init-image".into(),
                p(&good),
                "--strength".into(),
                "1.5".into(),
            ],
            "strength 1.5 is outside 0 to 1",
        ),
        (
            vec!["--strength".into(), "0.5".into()],
            "--strength goes with --init-image",
        ),
        (
            vec!["--init-image".into(), p(&good), "--paste-back".into()],
            "pasting the image back needs a mask",
        ),
        (
            vec![
                "--init-image".into(),
                p(&good),
                "--outpaint".into(),
                "8,8,0,0".into(),
                "--paste-back".into(),
                "99".into(),
            ],
            "at most 64 are allowed",
        ),
        (
            vec![
                "--init-image".into(),
                p(&good),
                "--outpaint".into(),
                "8,8".into(),
            ],
            "give four pixel counts",
        ),
        (
            vec![
                "--init-image".into(),
                p(&good),
                "--outpaint".into(),
                "2048,0,0,0".into(),
            ],
            "width must be",
        ),
        (
            vec![
                "--init-image".into(),
                p(&good),
                "--outpaint".into(),
                "4000000000,4000000000,0,0".into(),
            ],
            "outpainting would make a 8000000064×64 canvas",
        ),
        (
            vec![
                "--init-image".into(),
                p(&good),
                "--mask".into(),
                p(&not_image),
            ],
            "the mask",
        ),
    ];
    for (args, expected) in &cases {
        let args: Vec<&str> = [
            &["--steps", "2"][..],
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        ]
        .concat();
        let run = generate(&model, &out, &args);
        assert!(!run.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    assert!(
        !out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(),
        "nothing written for a refused run"
    );

    // An image whose sides are not multiples of 8 sets the size rounded down, and is resized.
    let odd = dir.path().join("odd.png");
    image::DynamicImage::new_rgb8(70, 66).save(&odd).unwrap();
    let run = generate(
        &model,
        &out,
        &["--steps", "2", "--init-image", &p(&odd), "--json"],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        (
            report["images"][0]["width"].as_u64(),
            report["images"][0]["height"].as_u64()
        ),
        (Some(64), Some(64))
    );
    assert_eq!(
        report["resized"][0],
        "the image was resized from 70×66 to 64×64"
    );

    // A mask of another size is resized, and the run says so; an outpaint widens the image.
    let small_mask = dir.path().join("mask.png");
    image::DynamicImage::new_luma8(32, 32)
        .save(&small_mask)
        .unwrap();
    let run = generate(
        &model,
        &out,
        &[
            "--steps",
            "2",
            "--init-image",
            &p(&good),
            "--mask",
            &p(&small_mask),
            "--json",
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        report["resized"][0],
        "the mask was resized from 32×32 to 64×64"
    );
    let run = generate(
        &model,
        &out,
        &[
            "--steps",
            "2",
            "--init-image",
            &p(&good),
            "--outpaint",
            "8,8,0,16",
            "--json",
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["images"][0]["width"], 80);
    assert_eq!(report["images"][0]["height"], 80);
    let recipe =
        embedded_recipe(&std::fs::read(report["images"][0]["path"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(recipe.source.unwrap().outpaint, Some([8, 8, 0, 16]));

    // A hires fix: a second pass twice as large; the recipe keeps the first pass's size.
    let run = generate(
        &model,
        &out,
        &[
            "--steps",
            "2",
            "--width",
            "32",
            "--height",
            "48",
            "--hires",
            "2",
            "--hires-strength",
            "0.5",
            "--json",
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        (
            report["images"][0]["width"].as_u64(),
            report["images"][0]["height"].as_u64()
        ),
        (Some(64), Some(96))
    );
    let bytes = std::fs::read(report["images"][0]["path"].as_str().unwrap()).unwrap();
    let recipe = embedded_recipe(&bytes).unwrap();
    assert_eq!((recipe.width, recipe.height), (Some(32), Some(48)));
    assert_eq!(
        recipe.hires.map(|h| (h.factor, h.strength)),
        Some((2.0, 0.5))
    );
    assert!(String::from_utf8_lossy(&bytes).contains("Hires upscale: 2"));
    let refused = generate(&model, &out, &["--steps", "2", "--hires", "5"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("the hires factor is 5; give 1 to 4"));
}
