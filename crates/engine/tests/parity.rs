//! Stage-by-stage parity with diffusers on the shared `tiny-sd15` fixture (see its README).

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use common::{fixture, fixture_request, max_diff};
use selfdiffusion_engine::{Control, NoiseSource, Observer, SchedulerKind, StableDiffusion};

/// Tolerance on every latent-space tensor.
const LATENT_TOL: f32 = 1e-4;
/// Tolerance on the decoded image in 0..1.
const IMAGE_TOL: f32 = 1e-3;

#[derive(Default)]
struct Recorder {
    tokens: Option<(Vec<u32>, Vec<u32>)>,
    cond: Option<Tensor>,
    uncond: Option<Tensor>,
    unet: Vec<(Tensor, f64, Tensor)>,
    guided: Vec<Tensor>,
    latents: Vec<Tensor>,
    image: Option<Tensor>,
}

impl Observer for Recorder {
    fn tokens(&mut self, cond: &[u32], uncond: &[u32]) {
        self.tokens = Some((cond.to_vec(), uncond.to_vec()));
    }
    fn embeddings(&mut self, cond: &Tensor, uncond: Option<&Tensor>) {
        self.cond = Some(cond.clone());
        self.uncond = uncond.cloned();
    }
    fn unet(&mut self, _i: usize, input: &Tensor, t: f64, output: &Tensor) {
        self.unet.push((input.clone(), t, output.clone()));
    }
    fn guided(&mut self, _i: usize, noise_pred: &Tensor) {
        self.guided.push(noise_pred.clone());
    }
    fn latents(&mut self, _i: usize, latents: &Tensor) {
        self.latents.push(latents.clone());
    }
    fn image(&mut self, image: &Tensor) {
        self.image = Some(image.clone());
    }
}

/// The fixture's fixed noise: initial latents, and Euler ancestral's per-step draws.
struct FixtureNoise {
    initial: Tensor,
    steps: Option<Tensor>,
}

impl NoiseSource for FixtureNoise {
    fn initial(&mut self, shape: &[usize]) -> selfdiffusion_engine::Result<Tensor> {
        assert_eq!(self.initial.dims(), shape);
        Ok(self.initial.clone())
    }
    fn step(&mut self, _shape: &[usize], i: usize) -> selfdiffusion_engine::Result<Tensor> {
        Ok(self
            .steps
            .as_ref()
            .expect("this scheduler draws no step noise")
            .i(i)
            .unwrap())
    }
}

fn load(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn check(stage: &str, ours: &Tensor, reference: &Tensor, tol: f32) {
    let d = max_diff(ours, reference);
    assert!(d <= tol, "{stage}: max |diff| = {d:e} exceeds {tol:e}");
    eprintln!("{stage}: max |diff| = {d:.2e}");
}

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
