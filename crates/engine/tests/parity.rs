//! Stage-by-stage parity with diffusers on the shared `tiny-sd15` fixture (see its README).

mod common;

use candle_core::{DType, Device, Tensor};
use common::{check, fixture, fixture_request, load_tensors as load, FixtureNoise, Recorder};
use selfdiffusion_engine::{Control, SchedulerKind, StableDiffusion};

/// Tolerance on every latent-space tensor.
const LATENT_TOL: f32 = 1e-4;
/// Tolerance on the decoded image in 0..1.
const IMAGE_TOL: f32 = 1e-3;

fn run(kind: SchedulerKind, reference: &str) {
    let dir = match fixture() {
        Ok(d) => d,
        Err(msg) => {
            eprintln!("skipped: {msg}");
            return;
        }
    };
    let out = load(
        &dir.join("reference")
            .join(reference)
            .join("outputs.safetensors"),
    );
    let init = load(&dir.join("reference/init_latents.safetensors"))["latents"].clone();
    let steps = (kind == SchedulerKind::EulerAncestral)
        .then(|| load(&dir.join("reference/euler_a_step_noise.safetensors"))["noise"].clone());
    let model = StableDiffusion::load(&dir.join("model"), &Device::Cpu, DType::F32).unwrap();
    let req = fixture_request();
    let mut rec = Recorder::default();
    let cond = model.encode_prompts(&req, &mut rec).unwrap();

    let (ids_cond, ids_uncond) = rec.tokens.clone().unwrap();
    let as_u32 = |t: &Tensor| {
        t.flatten_all()
            .unwrap()
            .to_dtype(DType::U32)
            .unwrap()
            .to_vec1::<u32>()
            .unwrap()
    };
    assert_eq!(ids_cond, as_u32(&out["input_ids_cond"]), "prompt token ids");
    assert_eq!(
        ids_uncond,
        as_u32(&out["input_ids_uncond"]),
        "negative prompt token ids"
    );
    check(
        "prompt_embeds",
        rec.cond.as_ref().unwrap(),
        &out["prompt_embeds"],
        LATENT_TOL,
    );
    check(
        "negative_prompt_embeds",
        rec.uncond.as_ref().unwrap(),
        &out["negative_prompt_embeds"],
        LATENT_TOL,
    );

    let mut noise = FixtureNoise {
        initial: init,
        steps,
    };
    model
        .run_image(&req, kind, &cond, &mut noise, &Control::default(), &mut rec)
        .unwrap();

    let timesteps = out["timesteps"]
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    assert_eq!(
        rec.unet.iter().map(|u| u.1).collect::<Vec<_>>(),
        timesteps,
        "timesteps"
    );
    for (i, (input, _, output)) in rec.unet.iter().enumerate() {
        check(
            &format!("unet_in_{i}"),
            input,
            &out[&format!("unet_in_{i}")],
            LATENT_TOL,
        );
        check(
            &format!("unet_out_{i}"),
            output,
            &out[&format!("unet_out_{i}")],
            LATENT_TOL,
        );
        check(
            &format!("noise_pred_{i}"),
            &rec.guided[i],
            &out[&format!("noise_pred_{i}")],
            LATENT_TOL,
        );
        check(
            &format!("latents_{i}"),
            &rec.latents[i],
            &out[&format!("latents_{i}")],
            LATENT_TOL,
        );
    }
    check(
        "final_latents",
        rec.latents.last().unwrap(),
        &out["final_latents"],
        LATENT_TOL,
    );
    check(
        "image",
        rec.image.as_ref().unwrap(),
        &out["image"],
        IMAGE_TOL,
    );
}

#[test]
fn ddim_matches_diffusers_stage_by_stage() {
    run(SchedulerKind::Ddim, "ddim");
}

#[test]
fn euler_ancestral_matches_diffusers_stage_by_stage() {
    run(SchedulerKind::EulerAncestral, "euler_a");
}

#[test]
fn clip_bpe_from_vocab_and_merges_matches_tokenizer_json() {
    let dir = match fixture() {
        Ok(d) => d.join("model/tokenizer"),
        Err(msg) => {
            eprintln!("skipped: {msg}");
            return;
        }
    };
    let bare = tempfile::tempdir().unwrap();
    for name in ["vocab.json", "merges.txt", "tokenizer_config.json"] {
        std::fs::copy(dir.join(name), bare.path().join(name)).unwrap();
    }
    let full = selfdiffusion_engine::PromptTokenizer::load(&dir).unwrap();
    let built = selfdiffusion_engine::PromptTokenizer::load(bare.path()).unwrap();
    for prompt in [
        "a photograph of an astronaut riding a horse on mars",
        "",
        "Hello,   WORLD!! It's 2026 — café naïve 東京 🚀",
        "masterpiece, (best quality:1.2), 8k uhd, dslr",
        &"long prompt words ".repeat(40),
    ] {
        assert_eq!(
            built.encode(prompt).unwrap(),
            full.encode(prompt).unwrap(),
            "{prompt:?}"
        );
    }
}
