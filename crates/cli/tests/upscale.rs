//! `selfdiffusion-cli upscale`: ESRGAN and Lanczos, the recipe carried over, bad input refused.

use std::path::Path;
use std::process::Command;

use selfdiffusion_recipe::{embedded_recipe, encode_png, Recipe};

fn upscale(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_selfdiffusion-cli"))
        .arg("upscale")
        .args(args)
        .args(["--json", "--device", "cpu"])
        .output()
        .unwrap()
}

fn esrgan(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/tests/data/tiny-esrgan")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn upscales_with_esrgan_or_lanczos_and_keeps_the_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("cat.png");
    let recipe = Recipe {
        prompt: "a cat".into(),
        seed: Some(4),
        width: Some(24),
        height: Some(20),
        ..Recipe::default()
    };
    let rgb: Vec<u8> = (0..24 * 20 * 3).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&source, encode_png(24, 20, &rgb, &recipe).unwrap()).unwrap();
    let out = dir.path().join("out");
    let src = source.to_str().unwrap();
    let dest = out.to_str().unwrap();
    for (factor, model, upscaler) in [
        ("4", Some(esrgan("x4.pth")), "x4"),
        ("2", Some(esrgan("x4.safetensors")), "x4"),
        ("2", Some(esrgan("x2.safetensors")), "x2"),
        ("2", None, "lanczos"),
    ] {
        let mut args = vec![src, "--factor", factor, "--out", dest];
        if let Some(model) = &model {
            args.extend(["--model", model.as_str()]);
        }
        let run = upscale(&args);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        let f: u64 = factor.parse().unwrap();
        assert_eq!(report["width"], 24 * f);
        assert_eq!(report["height"], 20 * f);
        let bytes = std::fs::read(report["path"].as_str().unwrap()).unwrap();
        let decoded = image::load_from_memory(&bytes).unwrap();
        assert_eq!(
            (decoded.width() as u64, decoded.height() as u64),
            (24 * f, 20 * f)
        );
        let kept = embedded_recipe(&bytes).unwrap();
        assert_eq!(kept.prompt, "a cat");
        assert_eq!(kept.seed, Some(4));
        assert_eq!(kept.width, Some(24), "the recipe of the source");
        let up = kept.upscale.unwrap();
        assert_eq!((up.factor as u64, up.upscaler.as_str()), (f, upscaler));
        assert_eq!(up.source_sha256.len(), 64);
    }
}

#[test]
fn bad_input_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let not_image = dir.path().join("x.png");
    std::fs::write(&not_image, b"text").unwrap();
    let good = dir.path().join("good.png");
    image::DynamicImage::new_rgb8(8, 8).save(&good).unwrap();
    let dest = out.to_str().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![not_image.to_str().unwrap().into()],
            "not a PNG, JPEG or WebP image",
        ),
        (
            vec![good.to_str().unwrap().into(), "--factor".into(), "3".into()],
            "the factor is 2 or 4",
        ),
        (
            vec![
                good.to_str().unwrap().into(),
                "--model".into(),
                not_image.to_str().unwrap().into(),
            ],
            "x.png",
        ),
    ];
    for (args, expected) in cases {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend(["--out", dest]);
        let run = upscale(&all);
        assert!(!run.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
}
