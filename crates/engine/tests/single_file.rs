//! Single-file checkpoints: the shared `tiny-sd15-single-file` fixture (the tiny-sd15 weights in
//! the original LDM layout) gives the folder's pipeline, and every kind of bad file is refused
//! with an error that says what it is.

mod common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::{fixture, fixture_request, max_diff, one_image, write_safetensors as write};
use selfdiffusion_engine::{
    Checkpoint, EngineError, Family, GeneratedImage, ModelSpec, Request, SchedulerKind,
    StableDiffusion,
};

/// The tiny-sd15 folder and the single file beside it, when the fixtures are there.
fn fixtures() -> Option<(PathBuf, PathBuf)> {
    let dir = match fixture() {
        Ok(d) => d,
        Err(msg) => {
            eprintln!("skipped: {msg}");
            return None;
        }
    };
    let file = dir
        .parent()
        .unwrap()
        .join("tiny-sd15-single-file/tiny-sd15.safetensors");
    assert!(file.is_file(), "{} is missing", file.display());
    Some((dir, file))
}

/// The fixture's DDIM run (see tiny-sd15's README), one image.
fn ddim_image(model: &StableDiffusion, dir: &Path) -> GeneratedImage {
    let request = Request {
        scheduler: Some(SchedulerKind::Ddim),
        init_latents: Some(dir.join("reference/init_latents.safetensors")),
        ..fixture_request()
    };
    one_image(model, &request)
}

#[test]
fn a_single_file_checkpoint_gives_the_folder_pipeline() {
    let Some((dir, file)) = fixtures() else {
        return;
    };
    let checkpoint = Checkpoint::open(&file).unwrap();
    assert_eq!(checkpoint.family(), Family::Sd1);
    let folder = StableDiffusion::load(&dir.join("model"), &Device::Cpu, DType::F32).unwrap();
    let single =
        StableDiffusion::load_single_file(&file, &dir.join("model"), &Device::Cpu, DType::F32)
            .unwrap();
    assert_eq!(single.dir, file);

    // Every weight the folder's text encoder reads comes out of the file equal.
    let ids = Tensor::new(&[0u32, 5, 9, 1][..], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let a = folder
        .text()
        .unwrap()
        .first()
        .encoder
        .forward(&ids)
        .unwrap();
    let b = single
        .text()
        .unwrap()
        .first()
        .encoder
        .forward(&ids)
        .unwrap();
    assert_eq!(max_diff(&a, &b), 0.0, "text encoder");

    // The whole DDIM run is bit-identical to the folder's (diffusers finds the same).
    let from_folder = ddim_image(&folder, &dir);
    let from_file = ddim_image(&single, &dir);
    assert_eq!(from_file.rgb, from_folder.rgb);

    // And both match the run diffusers stored for the folder, as the parity test checks.
    let stored = candle_core::safetensors::load(
        dir.join("reference/ddim/outputs.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let image = stored
        .get("image")
        .expect("the reference stores the decoded image");
    let ours = Tensor::from_vec(
        from_file.rgb.iter().map(|v| *v as f32 / 255.0).collect(),
        image.shape(),
        &Device::Cpu,
    )
    .unwrap();
    // 8-bit rounding of a 0..1 image: half a step.
    assert!(max_diff(&ours, image) <= 0.5 / 255.0 + 1e-3);
}

fn refusal(file: &Path) -> String {
    match Checkpoint::open(file) {
        Ok(_) => panic!("{} was accepted", file.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_files_are_refused_with_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let f32s = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
    let unet = "model.diffusion_model.input_blocks.0.0.weight";
    let te = "cond_stage_model.transformer.text_model.final_layer_norm.weight";

    let sd1 = write(
        dir.path(),
        "sd1.safetensors",
        &[(unet, f32s.clone()), (te, f32s.clone())],
    );
    assert_eq!(Checkpoint::open(&sd1).unwrap().family(), Family::Sd1);

    // Truncated: the header promises more bytes than the file has.
    let bytes = std::fs::read(&sd1).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 7]).unwrap();
    assert!(refusal(&truncated).contains("truncated or damaged"));

    // A header length that points past the end of the file.
    let past = dir.path().join("past-the-end.safetensors");
    let mut lying = (1u64 << 40).to_le_bytes().to_vec();
    lying.extend_from_slice(&bytes[8..]);
    std::fs::write(&past, lying).unwrap();
    assert!(refusal(&past).contains("truncated or damaged"));

    // Weights that are not floating point.
    let bytes_u8 = Tensor::zeros((2, 2), DType::U8, &Device::Cpu).unwrap();
    let ints = write(
        dir.path(),
        "ints.safetensors",
        &[(unet, bytes_u8), (te, f32s.clone())],
    );
    let err = refusal(&ints);
    assert!(
        err.contains(unet) && err.contains("floating point"),
        "{err}"
    );

    // PyTorch pickles are refused without being unpickled, with how to convert them.
    for (name, head) in [
        ("model.ckpt", &b"PK\x03\x04rest"[..]),
        ("model.bin", &b"\x80\x02rest"[..]),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, head).unwrap();
        let err = refusal(&file);
        assert!(
            err.contains("never runs pickle code") && err.contains(".safetensors"),
            "{err}"
        );
    }

    // Other families and other kinds of file say what they look like.
    let cases = [
        (
            "lora.safetensors",
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",
            "is a LoRA",
        ),
        (
            "sd3.safetensors",
            "model.diffusion_model.joint_blocks.0.context_block.attn.qkv.weight",
            "Stable Diffusion 3",
        ),
        (
            "flux.safetensors",
            "double_blocks.0.img_attn.qkv.weight",
            "FLUX",
        ),
        (
            "other.safetensors",
            "encoder.layer.0.weight",
            "original layout",
        ),
    ];
    for (name, key, expected) in cases {
        let file = write(dir.path(), name, &[(key, f32s.clone())]);
        let err = refusal(&file);
        assert!(err.contains(expected), "{name}: {err}");
    }
    assert!(matches!(
        Checkpoint::open(&dir.path().join("missing.safetensors")),
        Err(EngineError::MissingFile(_))
    ));

    // A checkpoint given the configs of another family says which it is.
    if let Some((sd15, _)) = fixtures() {
        let sdxl = write(
            dir.path(),
            "sdxl.safetensors",
            &[
                (unet, f32s.clone()),
                ("conditioner.embedders.1.model.ln_final.weight", f32s),
            ],
        );
        let err =
            StableDiffusion::load_single_file(&sdxl, &sd15.join("model"), &Device::Cpu, DType::F32)
                .err()
                .unwrap()
                .to_string();
        assert!(
            err.contains("Stable Diffusion XL checkpoint") && err.contains("its own family"),
            "{err}"
        );
    }
}

#[test]
fn the_real_lora_fixture_is_refused_as_a_checkpoint() {
    let Some((dir, _)) = fixtures() else {
        return;
    };
    let lora = dir
        .parent()
        .unwrap()
        .join("tiny-sd15-lora/lora/kohya_style.safetensors");
    let err = refusal(&lora);
    assert!(err.contains("is a LoRA"), "{err}");
}

#[test]
fn model_facts_come_from_configs_and_headers() {
    let Some((dir, file)) = fixtures() else {
        return;
    };
    let folder = ModelSpec::folder(dir.join("model")).facts().unwrap();
    assert_eq!(
        (
            folder.family,
            folder.family_name.as_str(),
            folder.precision.as_str()
        ),
        (Family::Sd1, "Stable Diffusion 1.x", "fp32")
    );
    let single = ModelSpec {
        path: file.clone(),
        config: Some(dir.join("model")),
        loras: Vec::new(),
    }
    .facts()
    .unwrap();
    assert_eq!(single.family, Family::Sd1);
    assert_eq!(single.bytes, std::fs::metadata(&file).unwrap().len());
    assert!(
        folder.bytes > single.bytes / 2,
        "every file of the folder counts"
    );
    let xl = ModelSpec::folder(dir.parent().unwrap().join("tiny-sdxl/model"))
        .facts()
        .unwrap();
    assert_eq!(xl.family, Family::Sdxl);
}
