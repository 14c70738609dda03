//! LoRAs against diffusers on the shared `tiny-sd15-lora` fixture (see its README): one kohya
//! LoRA at 0.7, then a kohya and a PEFT LoRA at [0.7, −0.4], stage by stage; and LoRA files that
//! do not fit refused with the key that does not.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use common::{fixture, fixture_request, max_diff, write_safetensors as write};
use selfdiffusion_engine::{
    Control, Engine, EngineError, GivenNoise, LoraFile, Loras, ModelPath, ModelSpec, Observer,
    Precision, SchedulerKind, StableDiffusion,
};

/// Tolerance on latents (fused weights against diffusers' unfused path: 4e-5, see the README).
const LATENT_TOL: f32 = 1e-4;
/// Tolerance on the decoded image in 0..1.
const IMAGE_TOL: f32 = 1e-3;

#[derive(Default)]
struct Seen {
    cond: Option<Tensor>,
    latents: Option<Tensor>,
    image: Option<Tensor>,
}

impl Observer for Seen {
    fn embeddings(&mut self, cond: &Tensor, _uncond: Option<&Tensor>) {
        self.cond = Some(cond.clone());
    }
    fn latents(&mut self, _i: usize, latents: &Tensor) {
        self.latents = Some(latents.clone());
    }
    fn image(&mut self, image: &Tensor) {
        self.image = Some(image.clone());
    }
}

fn run(dir: &Path, loras: &[(&str, f64)], reference: &str) {
    let lora_dir = dir.parent().unwrap().join("tiny-sd15-lora");
    let files = loras
        .iter()
        .map(|(name, w)| {
            (
                Arc::new(LoraFile::open(&lora_dir.join("lora").join(name)).unwrap()),
                *w,
            )
        })
        .collect();
    let model = StableDiffusion::load_with_loras(
        ModelPath::Folder(&dir.join("model")),
        &Loras::new(files),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    let req = fixture_request();
    let mut seen = Seen::default();
    let cond = model.encode_prompts(&req, &mut seen).unwrap();
    let init = candle_core::safetensors::load(
        dir.join("reference/init_latents.safetensors"),
        &Device::Cpu,
    )
    .unwrap()["latents"]
        .clone();
    model
        .run_image(
            &req,
            SchedulerKind::Ddim,
            &cond,
            &mut GivenNoise::new(init, 0),
            &Control::default(),
            &mut seen,
        )
        .unwrap();
    let out: HashMap<String, Tensor> = candle_core::safetensors::load(
        lora_dir
            .join("reference")
            .join(reference)
            .join("outputs.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let check = |stage: &str, ours: &Tensor, key: &str, tol: f32| {
        let d = max_diff(ours, &out[key]);
        eprintln!("{reference} {stage}: max |diff| = {d:.2e}");
        assert!(d <= tol, "{reference} {stage}: {d:e} > {tol:e}");
    };
    check(
        "prompt_embeds",
        seen.cond.as_ref().unwrap(),
        "prompt_embeds",
        LATENT_TOL,
    );
    check(
        "final latents",
        seen.latents.as_ref().unwrap(),
        "final_latents",
        LATENT_TOL,
    );
    check("image", seen.image.as_ref().unwrap(), "image", IMAGE_TOL);
}

#[test]
fn one_kohya_lora_at_0_7_matches_diffusers() {
    let Ok(dir) = fixture().map_err(|m| eprintln!("skipped: {m}")) else {
        return;
    };
    run(&dir, &[("kohya_style.safetensors", 0.7)], "kohya_0.7");
}

#[test]
fn a_kohya_and_a_peft_lora_at_0_7_and_minus_0_4_match_diffusers() {
    let Ok(dir) = fixture().map_err(|m| eprintln!("skipped: {m}")) else {
        return;
    };
    run(
        &dir,
        &[
            ("kohya_style.safetensors", 0.7),
            ("peft_style.safetensors", -0.4),
        ],
        "two_loras",
    );
}

#[test]
fn loras_that_do_not_fit_are_refused_by_key() {
    let Ok(dir) = fixture().map_err(|m| eprintln!("skipped: {m}")) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let small = |shape: (usize, usize)| Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
    let load_error = |file: &Path| {
        let loras = Loras::new(vec![(Arc::new(LoraFile::open(file).unwrap()), 1.0)]);
        StableDiffusion::load_with_loras(
            ModelPath::Folder(&dir.join("model")),
            &loras,
            &Device::Cpu,
            DType::F32,
        )
        .err()
        .unwrap()
        .to_string()
    };

    // One kohya module `key` with down and up matrices of these shapes, as the file `name`.
    let module = |name: &str, key: &str, down: (usize, usize), up: (usize, usize)| {
        write(
            tmp.path(),
            name,
            &[
                (&format!("{key}.lora_down.weight"), small(down)),
                (&format!("{key}.lora_up.weight"), small(up)),
            ],
        )
    };

    // A module that names no layer of this model: the load fails and names it.
    let stray = module(
        "stray.safetensors",
        "lora_unet_mid_block_attentions_7_proj_in",
        (2, 8),
        (8, 2),
    );
    let err = load_error(&stray);
    assert!(
        err.contains("lora_unet_mid_block_attentions_7_proj_in") && err.contains("does not fit"),
        "{err}"
    );

    // A module whose shapes do not fit its layer.
    let wide = module("wide.safetensors", "lora_unet_conv_in", (2, 999), (7, 2));
    let err = load_error(&wide);
    assert!(
        err.contains("lora_unet_conv_in") && err.contains("does not fit"),
        "{err}"
    );

    // An SDXL LoRA on this SD 1.x model: the load fails naming its key and what it is for.
    let sdxl = module(
        "sdxl.safetensors",
        "lora_te2_text_model_encoder_layers_0_mlp_fc1",
        (2, 8),
        (8, 2),
    );
    let err = load_error(&sdxl);
    assert!(
        err.contains("lora_te2_text_model_encoder_layers_0_mlp_fc1")
            && err.contains("Stable Diffusion XL LoRA"),
        "{err}"
    );

    // A checkpoint, and a file of another kind, are refused when opened.
    let checkpoint = dir
        .parent()
        .unwrap()
        .join("tiny-sd15-single-file/tiny-sd15.safetensors");
    let loha = write(
        tmp.path(),
        "loha.safetensors",
        &[("lora_unet_conv_in.hada_w1_a", small((2, 2)))],
    );
    let cases = [
        (checkpoint.as_path(), "is a checkpoint, not a LoRA"),
        (loha.as_path(), "not a LoRA tensor this engine reads"),
    ];
    for (file, expected) in cases {
        let err = LoraFile::open(file).unwrap_err();
        assert!(matches!(err, EngineError::Lora { .. }), "{err}");
        assert!(
            err.to_string().contains(expected),
            "{}: {err}",
            file.display()
        );
    }
}

/// Copies a folder tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn changing_loras_rebuilds_the_model_from_memory_not_from_disk() {
    let Ok(dir) = fixture().map_err(|m| eprintln!("skipped: {m}")) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    copy_dir(&dir.join("model"), &model);
    let lora = |name: &str| dir.parent().unwrap().join("tiny-sd15-lora/lora").join(name);
    let spec = |loras: Vec<(std::path::PathBuf, f64)>| ModelSpec {
        path: model.clone(),
        config: None,
        loras,
    };
    let kohya = vec![(lora("kohya_style.safetensors"), 0.7)];
    let both = vec![
        (lora("kohya_style.safetensors"), 0.7),
        (lora("peft_style.safetensors"), -0.4),
    ];
    let request = selfdiffusion_engine::Request {
        scheduler: Some(SchedulerKind::Ddim),
        init_latents: Some(dir.join("reference/init_latents.safetensors")),
        ..fixture_request()
    };
    let image_of = |model: &StableDiffusion| {
        let mut rgb = Vec::new();
        model
            .generate(&request, &Control::default(), &mut |_| {}, &mut |image| {
                rgb = image.rgb;
                Ok(())
            })
            .unwrap();
        rgb
    };
    // What each LoRA set gives when loaded fresh from disk.
    let expected_both = image_of(&spec(both.clone()).load(&Device::Cpu, DType::F32).unwrap());
    let expected_none = image_of(&spec(Vec::new()).load(&Device::Cpu, DType::F32).unwrap());
    assert_ne!(expected_both, expected_none);

    let engine = Engine::new(Device::Cpu, DType::F32);
    let run = |spec: &ModelSpec| {
        let mut rgb = Vec::new();
        engine
            .generate(
                spec,
                &request,
                &Control::default(),
                &mut |_| {},
                &mut |image| {
                    rgb = image.rgb;
                    Ok(())
                },
            )
            .unwrap();
        rgb
    };
    run(&spec(kohya));
    // The weights leave the disk: other LoRAs on the same model must not need them.
    for part in ["unet", "vae", "text_encoder"] {
        for entry in std::fs::read_dir(model.join(part)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "safetensors") {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
    assert_eq!(run(&spec(both)), expected_both);
    assert_eq!(run(&spec(Vec::new())), expected_none);
}

/// Low-memory runs free the text encoders after encoding and read them again, LoRAs merged,
/// for the next request: the images are those of an ordinary engine.
#[test]
fn low_memory_runs_read_the_text_encoders_again_with_their_loras() {
    let Ok(dir) = fixture().map_err(|m| eprintln!("skipped: {m}")) else {
        return;
    };
    let lora = |name: &str| dir.parent().unwrap().join("tiny-sd15-lora/lora").join(name);
    let spec = ModelSpec {
        path: dir.join("model"),
        config: None,
        loras: vec![(lora("kohya_style.safetensors"), 0.7)],
    };
    let request = selfdiffusion_engine::Request {
        scheduler: Some(SchedulerKind::Ddim),
        init_latents: Some(dir.join("reference/init_latents.safetensors")),
        ..fixture_request()
    };
    let run = |engine: &Engine, prompt: &str| {
        let mut rgb = Vec::new();
        let request = selfdiffusion_engine::Request {
            prompt: prompt.into(),
            ..request.clone()
        };
        engine
            .generate(
                &spec,
                &request,
                &Control::default(),
                &mut |_| {},
                &mut |image| {
                    rgb = image.rgb;
                    Ok(())
                },
            )
            .unwrap();
        rgb
    };
    let ordinary = Engine::new(Device::Cpu, DType::F32);
    let low = Engine::new(Device::Cpu, DType::F32).with_low_memory(true);
    let prompts = ["a red fox", "a blue bird"];
    for prompt in prompts {
        assert_eq!(run(&low, prompt), run(&ordinary, prompt), "{prompt}");
        let model = low.model(&spec, &mut |_| {}).unwrap();
        assert!(!model.text_loaded(), "freed after encoding");
        assert!(ordinary.model(&spec, &mut |_| {}).unwrap().text_loaded());
    }
}

/// An engine keeping its weights in f16 merges LoRAs into them (in f32, rounded back) and
/// changes LoRAs from the weights it kept: each image equals a fresh half-precision load's.
#[test]
fn half_precision_engines_merge_and_change_loras_as_a_fresh_load() {
    let Ok(dir) = fixture().map_err(|m| eprintln!("skipped: {m}")) else {
        return;
    };
    let lora = dir
        .parent()
        .unwrap()
        .join("tiny-sd15-lora/lora/kohya_style.safetensors");
    let spec = |loras: Vec<(std::path::PathBuf, f64)>| ModelSpec {
        path: dir.join("model"),
        config: None,
        loras,
    };
    let request = selfdiffusion_engine::Request {
        scheduler: Some(SchedulerKind::Ddim),
        init_latents: Some(dir.join("reference/init_latents.safetensors")),
        ..fixture_request()
    };
    let half = Precision::new(DType::F32, true);
    let fresh =
        |spec: &ModelSpec| common::one_image(&spec.load(&Device::Cpu, half).unwrap(), &request).rgb;
    let engine = Engine::new(Device::Cpu, DType::F32).with_half_weights(true);
    for loras in [
        vec![(lora.clone(), 0.8)],
        Vec::new(),
        vec![(lora.clone(), 0.3)],
    ] {
        let spec = spec(loras);
        let model = engine.model(&spec, &mut |_| {}).unwrap();
        assert_eq!(common::one_image(&model, &request).rgb, fresh(&spec));
    }
    let full = common::one_image(
        &spec(Vec::new()).load(&Device::Cpu, DType::F32).unwrap(),
        &request,
    );
    assert_ne!(
        full.rgb,
        fresh(&spec(Vec::new())),
        "the weights were not rounded"
    );
}

/// An SDXL LoRA on the tiny-sdxl model (`tiny-sdxl`'s README): the same modules written the
/// kohya way (UNet layers under their original names, `lora_te1_` / `lora_te2_`) and the PEFT
/// way (diffusers names) change the model identically, and every one of them is used.
#[test]
fn sdxl_loras_in_kohya_and_peft_naming_change_the_same_layers() {
    let dir = match common::sdxl_fixture() {
        Ok(d) => d.join("model"),
        Err(msg) => {
            eprintln!("skipped: {msg}");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let random = |shape: &[usize]| Tensor::randn(0f32, 0.5, shape, &Device::Cpu).unwrap();
    // (kohya name, PEFT name, down shape, up shape) of a UNet attention, a UNet resnet conv and
    // a layer of each text encoder.
    let modules = [
        (
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
            vec![2, 32],
            vec![32, 2],
        ),
        (
            "lora_unet_input_blocks_1_0_in_layers_2",
            "unet.down_blocks.0.resnets.0.conv1",
            vec![2, 16, 3, 3],
            vec![16, 2, 1, 1],
        ),
        (
            "lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
            "text_encoder.text_model.encoder.layers.0.self_attn.q_proj",
            vec![2, 16],
            vec![16, 2],
        ),
        (
            "lora_te2_text_model_encoder_layers_0_mlp_fc1",
            "text_encoder_2.text_model.encoder.layers.0.mlp.fc1",
            vec![2, 32],
            vec![128, 2],
        ),
    ];
    let mut kohya = Vec::new();
    let mut peft = Vec::new();
    for (k, p, down, up) in &modules {
        let (down, up) = (random(down), random(up));
        kohya.push((format!("{k}.lora_down.weight"), down.clone()));
        kohya.push((format!("{k}.lora_up.weight"), up.clone()));
        kohya.push((
            format!("{k}.alpha"),
            Tensor::new(2f32, &Device::Cpu).unwrap(),
        ));
        peft.push((format!("{p}.lora_A.weight"), down));
        peft.push((format!("{p}.lora_B.weight"), up));
    }
    let kohya = write(tmp.path(), "kohya_xl.safetensors", &named(&kohya));
    let peft = write(tmp.path(), "peft_xl.safetensors", &named(&peft));

    let request = selfdiffusion_engine::Request {
        prompt: "a red fox".into(),
        negative_prompt: "blurry".into(),
        steps: 2,
        guidance: 5.0,
        width: 64,
        height: 64,
        seed: 7,
        ..selfdiffusion_engine::Request::default()
    };
    let image = |lora: Option<&Path>| {
        let files = lora
            .map(|f| vec![(Arc::new(LoraFile::open(f).unwrap()), 0.8)])
            .unwrap_or_default();
        let model = StableDiffusion::load_with_loras(
            ModelPath::Folder(&dir),
            &Loras::new(files),
            &Device::Cpu,
            DType::F32,
        )
        .unwrap();
        common::one_image(&model, &request).rgb
    };
    let base = image(None);
    let with_kohya = image(Some(&kohya));
    assert_eq!(with_kohya, image(Some(&peft)), "kohya and PEFT naming");
    assert_ne!(with_kohya, base, "the LoRA changes the image");
}

/// `tensors` with borrowed names, as [`write`] takes them.
fn named(tensors: &[(String, Tensor)]) -> Vec<(&str, Tensor)> {
    tensors
        .iter()
        .map(|(k, t)| (k.as_str(), t.clone()))
        .collect()
}
