//! Stage-by-stage parity with diffusers' `StableDiffusionXLPipeline` on the shared `tiny-sdxl`
//! fixture (see its README): the SDXL base run (Euler, CFG, a negative prompt) and the
//! SDXL-Turbo style run (Euler ancestral "trailing", no CFG, 2 steps).

mod common;

use candle_core::{DType, Device, Tensor};
use common::{check, load_tensors as load, max_abs, sdxl_fixture, FixtureNoise, Recorder};
use selfdiffusion_engine::config::{read_json, SchedulerConfig};
use selfdiffusion_engine::schedulers::Schedule;
use selfdiffusion_engine::{
    Control, Precision, Request, SchedulerKind, StableDiffusion, TextEncoders,
};

/// Largest |diff| allowed on a latent tensor whose values reach `scale`: 1e-4, relative above 1
/// (the README: references from one CPU differ from another's by ~1e-5).
fn latent_tol(reference: &Tensor) -> f32 {
    1e-4 * max_abs(reference).max(1.0)
}

/// Tolerance on the decoded image in 0..1.
const IMAGE_TOL: f32 = 1e-3;

fn check_latent(stage: &str, ours: &Tensor, reference: &Tensor) {
    check(stage, ours, reference, latent_tol(reference));
}

fn ids(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec1::<u32>()
        .unwrap()
}

/// One reference run: `run` names its folder, `scheduler_dir` the scheduler config it used.
fn run(run: &str, scheduler_dir: &str, kind: SchedulerKind, req: Request) {
    let dir = match sdxl_fixture() {
        Ok(d) => d,
        Err(msg) => {
            eprintln!("skipped: {msg}");
            return;
        }
    };
    let out = load(&dir.join("reference").join(run).join("outputs.safetensors"));
    let init = load(&dir.join("reference/init_latents.safetensors"))["latents"].clone();
    let steps = (kind == SchedulerKind::EulerAncestral)
        .then(|| load(&dir.join("reference/turbo_step_noise.safetensors"))["noise"].clone());
    let mut model = StableDiffusion::load(&dir.join("model"), &Device::Cpu, DType::F32).unwrap();
    let config: SchedulerConfig = read_json(
        &dir.join("model")
            .join(scheduler_dir)
            .join("scheduler_config.json"),
    )
    .unwrap();
    model.schedule = Schedule::from_config(&config).unwrap();

    // Both tokenizers: the second pads with "!" (id 0).
    let text = model.text().unwrap();
    let TextEncoders::Xl { second, .. } = &*text else {
        panic!("an SDXL folder loads two text encoders");
    };
    assert_eq!(
        second.tokenizer.encode(&req.prompt).unwrap().ids,
        ids(&out["input_ids_cond_2"]),
        "tokenizer_2 ids"
    );

    let mut rec = Recorder::default();
    let cond = model.encode_prompts(&req, &mut rec).unwrap();
    assert_eq!(
        rec.tokens.clone().unwrap().0,
        ids(&out["input_ids_cond_1"]),
        "tokenizer ids"
    );
    check_latent(
        "prompt_embeds",
        rec.cond.as_ref().unwrap(),
        &out["prompt_embeds"],
    );
    if let Some(reference) = out.get("negative_prompt_embeds") {
        check_latent(
            "negative_prompt_embeds",
            rec.uncond.as_ref().unwrap(),
            reference,
        );
    } else {
        assert!(
            rec.uncond.is_none(),
            "no CFG: the negative is never encoded"
        );
    }
    check_latent(
        "encoder_hidden_states",
        &cond.context,
        &out["encoder_hidden_states"],
    );
    let added = cond.added.as_ref().expect("SDXL conditioning");
    check_latent(
        "add_text_embeds",
        &added.text_embeds,
        &out["add_text_embeds"],
    );
    check("add_time_ids", &added.time_ids, &out["add_time_ids"], 0.0);

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
        check_latent(
            &format!("unet_in_{i}"),
            input,
            &out[&format!("unet_in_{i}")],
        );
        check_latent(
            &format!("unet_out_{i}"),
            output,
            &out[&format!("unet_out_{i}")],
        );
        check_latent(
            &format!("noise_pred_{i}"),
            &rec.guided[i],
            &out[&format!("noise_pred_{i}")],
        );
        check_latent(
            &format!("latents_{i}"),
            &rec.latents[i],
            &out[&format!("latents_{i}")],
        );
    }
    check_latent(
        "final_latents",
        rec.latents.last().unwrap(),
        &out["final_latents"],
    );
    check(
        "image",
        rec.image.as_ref().unwrap(),
        &out["image"],
        IMAGE_TOL,
    );
}

const PROMPT: &str = "a cinematic photo of a red fox in the snow, golden hour";

#[test]
fn sdxl_base_matches_diffusers_stage_by_stage() {
    run(
        "base",
        "scheduler",
        SchedulerKind::Euler,
        Request {
            prompt: PROMPT.into(),
            negative_prompt: "blurry, low quality, watermark".into(),
            steps: 4,
            guidance: 5.0,
            width: 64,
            height: 64,
            ..Request::default()
        },
    );
}

#[test]
fn sdxl_turbo_matches_diffusers_stage_by_stage() {
    run(
        "turbo",
        "scheduler_turbo",
        SchedulerKind::EulerAncestral,
        Request {
            prompt: PROMPT.into(),
            negative_prompt: String::new(),
            steps: 2,
            guidance: 0.0,
            width: 64,
            height: 64,
            ..Request::default()
        },
    );
}

/// An SDXL model loaded in f16 runs its VAE in f32, as diffusers upcasts a `force_upcast` VAE
/// (the SDXL VAE overflows in f16); an SD 1.5 model keeps its VAE at the model's precision, as
/// diffusers' `StableDiffusionPipeline` does.
#[test]
fn an_sdxl_vae_that_asks_for_it_runs_in_f32_under_an_f16_model() {
    let (Ok(xl), Ok(sd15)) = (sdxl_fixture(), common::fixture()) else {
        eprintln!("skipped: a fixture is missing");
        return;
    };
    let model = StableDiffusion::load(&xl.join("model"), &Device::Cpu, DType::F16).unwrap();
    assert_eq!((model.dtype, model.vae_dtype), (DType::F16, DType::F32));
    let req = Request {
        width: 64,
        height: 64,
        ..Request::default()
    };
    let latents = Tensor::randn(0f32, 1.0, &model.latent_shape(&req), &Device::Cpu).unwrap();
    let image = model
        .decode(
            &latents,
            &mut common::Recorder::default(),
            0,
            SchedulerKind::Euler,
        )
        .unwrap();
    assert_eq!(image.rgb.len(), 64 * 64 * 3);
    let plain = StableDiffusion::load(&sd15.join("model"), &Device::Cpu, DType::F16).unwrap();
    assert_eq!(plain.vae_dtype, DType::F16);
}

/// SDXL with its weight matrices kept in f16 under f32 compute (both text encoders, the
/// projection, the added embeddings): the image stays within the f16 rounding of the weights
/// of the full-precision one (measured: 1 of 255 at most on this fixture).
#[test]
fn sdxl_with_half_precision_weights_stays_close_to_full_precision() {
    let Ok(dir) = sdxl_fixture() else {
        eprintln!("skipped: no tiny-sdxl fixture");
        return;
    };
    let req = Request {
        prompt: PROMPT.into(),
        steps: 3,
        guidance: 5.0,
        width: 64,
        height: 64,
        ..Request::default()
    };
    let image = |precision: Precision| {
        let model = StableDiffusion::load(&dir.join("model"), &Device::Cpu, precision).unwrap();
        common::one_image(&model, &req).rgb
    };
    let full = image(Precision::from(DType::F32));
    let half = image(Precision::new(DType::F32, true));
    let furthest = full
        .iter()
        .zip(&half)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    eprintln!("furthest pixel: {furthest}");
    assert!(furthest <= 3, "{furthest}");
    assert_ne!(full, half, "the weights were not rounded");
}
