//! img2img and inpainting against diffusers on the shared `tiny-sd15-img2img` fixture (see its
//! README): the noise diffusers drew is injected, and every stage is compared.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, IndexOp, Tensor};
use common::{check, fixture_request, load_tensors as load, named_fixture, Recorder};
use selfdiffusion_engine::{
    Control, GeneratedImage, GivenNoise, HiresFix, ImageInput, Mask, NoiseSource, Picture, Request,
    SchedulerKind, SeededNoise, StableDiffusion, MAX_INPUT_PIXELS,
};

/// Tolerance on every latent-space tensor (the fixture's README: ≤ 1e-4 on latents).
const LATENT_TOL: f32 = 1e-4;
/// Tolerance on the decoded image in 0..1.
const IMAGE_TOL: f32 = 1e-3;

/// The img2img fixture and the tiny-sd15 one (whose model and start latents it uses).
fn fixtures() -> Option<(PathBuf, PathBuf)> {
    match (
        named_fixture("tiny-sd15-img2img"),
        named_fixture("tiny-sd15"),
    ) {
        (Ok(a), Ok(b)) => Some((a, b)),
        (Err(msg), _) | (_, Err(msg)) => {
            eprintln!("skipped: {msg}");
            None
        }
    }
}

fn input(dir: &Path, strength: f64, masked: bool) -> ImageInput {
    let inputs = dir.join("inputs");
    ImageInput {
        image: Arc::new(Picture::open(&inputs.join("init_image.png"), MAX_INPUT_PIXELS).unwrap()),
        strength,
        mask: masked
            .then(|| Arc::new(Mask::open(&inputs.join("mask.png"), MAX_INPUT_PIXELS).unwrap())),
        outpaint: None,
        paste_back: None,
    }
}

/// Runs `req` on `model` with `scheduler` and `noise`, recording every stage; and the image.
fn run_with(
    model: &StableDiffusion,
    req: &Request,
    scheduler: SchedulerKind,
    noise: &mut dyn NoiseSource,
) -> (Recorder, GeneratedImage) {
    let mut rec = Recorder::default();
    let cond = model.encode_prompts(req, &mut rec).unwrap();
    let image = model
        .run_image(req, scheduler, &cond, noise, &Control::default(), &mut rec)
        .unwrap();
    (rec, image)
}

/// Runs `req` on `model` with DDIM and the given noise, recording every stage.
fn run(model: &StableDiffusion, req: &Request, noise: &mut GivenNoise) -> Recorder {
    run_with(model, req, SchedulerKind::Ddim, noise).0
}

/// The fixture's injected noise `reference/<name>`, with `seed` for anything it lacks.
fn given(dir: &Path, name: &str, seed: u64) -> GivenNoise {
    GivenNoise::load(None, Some(&dir.join("reference").join(name)), seed).unwrap()
}

/// Compares a run with the reference `name` stage by stage.
fn compare(rec: &Recorder, out: &std::collections::HashMap<String, Tensor>) {
    let timesteps = out["timesteps"]
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    assert_eq!(
        rec.unet.iter().map(|u| u.1).collect::<Vec<_>>(),
        timesteps,
        "timesteps run"
    );
    check(
        "latents_init_scaled",
        rec.start.as_ref().unwrap(),
        &out["latents_init_scaled"],
        LATENT_TOL,
    );
    for (i, (input, _, output)) in rec.unet.iter().enumerate() {
        for (stage, ours) in [
            ("unet_in", input),
            ("unet_out", output),
            ("noise_pred", &rec.guided[i]),
            ("latents", &rec.latents[i]),
        ] {
            let key = format!("{stage}_{i}");
            check(&key, ours, &out[&key], LATENT_TOL);
        }
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

fn request(steps: usize, input: ImageInput) -> Request {
    Request {
        steps,
        init: Some(input),
        ..fixture_request()
    }
}

#[test]
fn img2img_matches_diffusers() {
    let Some((dir, sd15)) = fixtures() else {
        return;
    };
    let model = StableDiffusion::load(&sd15.join("model"), &Device::Cpu, DType::F32).unwrap();
    let req = request(5, input(&dir, 0.6, false));
    assert_eq!(req.steps_run(), 3);
    let mut noise = given(&dir, "img2img_noise.safetensors", 0);
    let rec = run(&model, &req, &mut noise);
    compare(
        &rec,
        &load(&dir.join("reference/img2img/outputs.safetensors")),
    );
}

#[test]
fn inpaint_with_a_4_channel_unet_matches_diffusers_blending() {
    let Some((dir, sd15)) = fixtures() else {
        return;
    };
    let model = StableDiffusion::load(&sd15.join("model"), &Device::Cpu, DType::F32).unwrap();
    let req = request(4, input(&dir, 0.75, true));
    let mut noise = given(&dir, "inpaint_noise.safetensors", 0);
    let rec = run(&model, &req, &mut noise);
    let out = load(&dir.join("reference/inpaint/outputs.safetensors"));
    compare(&rec, &out);
    // After the last step the kept cells are the image's own latents, exactly.
    let mask = out["mask_latent"].i(0..1).unwrap();
    let keep = (mask.ones_like().unwrap() - &mask).unwrap();
    let final_kept = rec.latents.last().unwrap().broadcast_mul(&keep).unwrap();
    let image_kept = out["image_latents"].broadcast_mul(&keep).unwrap();
    check("kept latents", &final_kept, &image_kept, LATENT_TOL);
}

#[test]
fn inpaint_with_a_9_channel_unet_matches_diffusers() {
    let Some((dir, sd15)) = fixtures() else {
        return;
    };
    let model =
        StableDiffusion::load(&dir.join("model-inpaint9"), &Device::Cpu, DType::F32).unwrap();
    assert!(model.inpainting_unet());
    let req = request(4, input(&dir, 1.0, true));
    let mut noise = GivenNoise::load(
        Some(&sd15.join("reference/init_latents.safetensors")),
        Some(&dir.join("reference/inpaint9_noise.safetensors")),
        0,
    )
    .unwrap();
    let rec = run(&model, &req, &mut noise);
    let out = load(&dir.join("reference/inpaint9/outputs.safetensors"));
    compare(&rec, &out);
    // The UNet's extra channels are the latent mask and the masked image's latents.
    let extra = rec.unet[0].0.narrow(1, 4, 5).unwrap();
    let expected = Tensor::cat(&[&out["mask_latent"], &out["masked_image_latents"]], 1).unwrap();
    check(
        "mask and masked image latents",
        &extra,
        &expected,
        LATENT_TOL,
    );
}

#[test]
fn strength_0_returns_the_image_through_the_vae() {
    let Some((dir, sd15)) = fixtures() else {
        return;
    };
    let model = StableDiffusion::load(&sd15.join("model"), &Device::Cpu, DType::F32).unwrap();
    let req = request(5, input(&dir, 0.0, false));
    assert_eq!(req.steps_run(), 0);
    let noise_file = dir.join("reference/img2img_noise.safetensors");
    let mut noise = GivenNoise::load(None, Some(&noise_file), 0).unwrap();
    let rec = run(&model, &req, &mut noise);
    assert!(rec.unet.is_empty(), "no step runs at strength 0");
    // The reconstruction by hand: encode, sample with the same noise, decode.
    let picture = Picture::open(&dir.join("inputs/init_image.png"), MAX_INPUT_PIXELS).unwrap();
    let posterior = model
        .vae
        .encoder
        .encode(&picture.to_tensor(&Device::Cpu).unwrap())
        .unwrap();
    let sample = posterior
        .sample(&load(&noise_file)["vae_sample_noise"])
        .unwrap();
    let decoded = model.vae.decoder.decode(&sample).unwrap();
    let expected = ((decoded / 2.0).unwrap() + 0.5)
        .unwrap()
        .clamp(0f32, 1f32)
        .unwrap()
        .permute((0, 2, 3, 1))
        .unwrap();
    check(
        "strength 0 image",
        rec.image.as_ref().unwrap(),
        &expected,
        1e-5,
    );
    check(
        "strength 0 start",
        rec.start.as_ref().unwrap(),
        &(sample * 0.18215).unwrap(),
        1e-6,
    );
}

#[test]
fn every_scheduler_runs_img2img_from_the_strengths_step() {
    let Some((dir, sd15)) = fixtures() else {
        return;
    };
    let model = StableDiffusion::load(&sd15.join("model"), &Device::Cpu, DType::F32).unwrap();
    for kind in [
        SchedulerKind::Euler,
        SchedulerKind::EulerAncestral,
        SchedulerKind::DpmPp2mKarras,
    ] {
        let req = request(10, input(&dir, 0.5, true));
        let mut noise = given(&dir, "img2img_noise.safetensors", 3);
        let (rec, image) = run_with(&model, &req, kind, &mut noise);
        assert_eq!(rec.unet.len(), 5, "{kind:?}: half of 10 steps");
        assert_eq!((image.width, image.height), (64, 64));
        assert!(
            rec.latents.iter().all(|l| common::max_abs(l).is_finite()),
            "{kind:?}"
        );
    }
}

#[test]
fn paste_back_keeps_every_unmasked_pixel_of_the_image() {
    let Some((dir, sd15)) = fixtures() else {
        return;
    };
    let model = StableDiffusion::load(&sd15.join("model"), &Device::Cpu, DType::F32).unwrap();
    let plain = request(4, input(&dir, 0.75, true));
    let pasted = Request {
        init: Some(ImageInput {
            paste_back: Some(0),
            ..input(&dir, 0.75, true)
        }),
        ..plain.clone()
    };
    let run = |req: &Request| {
        let mut noise = given(&dir, "inpaint_noise.safetensors", 0);
        run_with(&model, req, SchedulerKind::Ddim, &mut noise).1
    };
    let (without, with) = (run(&plain), run(&pasted));
    let source = Picture::open(&dir.join("inputs/init_image.png"), MAX_INPUT_PIXELS).unwrap();
    let mask = Mask::open(&dir.join("inputs/mask.png"), MAX_INPUT_PIXELS).unwrap();
    let mut kept_changed = 0;
    for p in 0..64 * 64 {
        let px = |rgb: &[u8]| rgb[p * 3..p * 3 + 3].to_vec();
        if mask.repaints(p % 64, p / 64) {
            assert_eq!(px(&with.rgb), px(&without.rgb), "repainted pixel {p}");
        } else {
            assert_eq!(px(&with.rgb), px(&source.rgb), "kept pixel {p}");
            kept_changed += usize::from(px(&without.rgb) != px(&source.rgb));
        }
    }
    assert!(
        kept_changed > 100,
        "without paste-back the VAE changes kept pixels"
    );
}

#[test]
fn a_hires_fix_is_img2img_of_the_enlarged_first_image_with_the_seeds_next_draws() {
    let Some((_, sd15)) = fixtures() else {
        return;
    };
    let model = StableDiffusion::load(&sd15.join("model"), &Device::Cpu, DType::F32).unwrap();
    let hires = HiresFix {
        factor: 2.0,
        strength: 0.5,
    };
    let req = Request {
        seed: 5,
        scheduler: Some(SchedulerKind::Ddim),
        hires: Some(hires),
        ..fixture_request()
    };
    assert_eq!(req.steps_run(), 4 + 2);
    let mut steps = Vec::new();
    let mut images = Vec::new();
    model
        .generate(
            &req,
            &Control::default(),
            &mut |p| {
                if p.phase == selfdiffusion_engine::Phase::Denoising {
                    steps.push((p.step, p.steps));
                }
            },
            &mut |image| {
                images.push(image);
                Ok(())
            },
        )
        .unwrap();
    let made = &images[0];
    assert_eq!((made.width, made.height), (128, 128));
    assert_eq!(steps.last(), Some(&(6, 6)));
    assert!(steps.windows(2).all(|w| w[0].0 <= w[1].0), "{steps:?}");
    let recipe = req.recipe(made, "tiny", "local");
    assert_eq!((recipe.width, recipe.height), (Some(64), Some(64)));
    assert_eq!(recipe.hires, Some(hires));

    // By hand: the first pass, Lanczos to 128², img2img at 0.5 with the same noise stream.
    let first_req = Request {
        hires: None,
        ..req.clone()
    };
    let mut noise = SeededNoise::new(5);
    let run =
        |r: &Request, noise: &mut SeededNoise| run_with(&model, r, SchedulerKind::Ddim, noise).1;
    let first = run(&first_req, &mut noise);
    let enlarged = Picture::from_pixels(64, 64, first.rgb).resized(128, 128);
    let second_req = Request {
        width: 128,
        height: 128,
        init: Some(ImageInput {
            image: std::sync::Arc::new(enlarged),
            strength: 0.5,
            mask: None,
            outpaint: None,
            paste_back: None,
        }),
        ..first_req
    };
    let second = run(&second_req, &mut noise);
    assert_eq!(second.rgb, made.rgb);
}

/// Inpainting with a 4-channel UNet keeps the unmasked region within the VAE's reconstruction
/// error: there the image differs from the VAE's reconstruction of the input (strength 0) by
/// less than that reconstruction differs from the input itself (the tiny VAE is random, so its
/// error is large, and its middle attention spreads a little of the repainted cells everywhere),
/// while the masked region is redrawn.
#[test]
fn inpainting_keeps_the_unmasked_region_within_the_vaes_reconstruction_error() {
    let Some((dir, sd15)) = fixtures() else {
        return;
    };
    let model = StableDiffusion::load(&sd15.join("model"), &Device::Cpu, DType::F32).unwrap();
    let run = |req: &Request| {
        let mut noise = given(&dir, "inpaint_noise.safetensors", 0);
        run_with(&model, req, SchedulerKind::Ddim, &mut noise).1
    };
    let inpainted = run(&request(4, input(&dir, 0.75, true)));
    let reconstruction = run(&request(4, input(&dir, 0.0, false)));
    let source = Picture::open(&dir.join("inputs/init_image.png"), MAX_INPUT_PIXELS).unwrap();
    let mask = Mask::open(&dir.join("inputs/mask.png"), MAX_INPUT_PIXELS).unwrap();
    let mean_diff = |a: &[u8], b: &[u8], masked: bool| {
        let (mut sum, mut n) = (0.0, 0);
        for p in 0..64 * 64 {
            // Latent cells by the top-left rule: what the blend keeps or repaints.
            let (x, y) = (p % 64, p / 64);
            if mask.repaints(x / 8 * 8, y / 8 * 8) == masked {
                sum += (0..3)
                    .map(|c| f64::from(a[p * 3 + c].abs_diff(b[p * 3 + c])))
                    .sum::<f64>();
                n += 3;
            }
        }
        sum / f64::from(n)
    };
    let kept_moved = mean_diff(&inpainted.rgb, &reconstruction.rgb, false);
    let vae_error = mean_diff(&reconstruction.rgb, &source.rgb, false);
    let redrawn = mean_diff(&inpainted.rgb, &reconstruction.rgb, true);
    eprintln!("unmasked: {kept_moved:.2} from the reconstruction, whose own error is {vae_error:.2}; masked: {redrawn:.2}");
    assert!(kept_moved < vae_error, "{kept_moved} ≥ {vae_error}");
    assert!(kept_moved < redrawn, "{kept_moved} ≥ {redrawn}");
}
