//! Behaviour of the pipeline on a tiny random model built by the test itself.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use candle_core::{DType, Device};
use selfdiffusion_engine::{
    Control, EngineError, GeneratedImage, ModelSpec, Phase, Request, SchedulerKind, StableDiffusion,
};

struct Tiny {
    _dir: tempfile::TempDir,
    model: StableDiffusion,
}

/// One tiny model per test binary (its weights are random but fixed once written).
fn tiny() -> &'static StableDiffusion {
    static MODEL: OnceLock<Tiny> = OnceLock::new();
    &MODEL
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            common::tiny_model(dir.path());
            let model = StableDiffusion::load(dir.path(), &Device::Cpu, DType::F32).unwrap();
            Tiny { _dir: dir, model }
        })
        .model
}

fn request() -> Request {
    Request {
        prompt: "a red cat on mars".into(),
        negative_prompt: "blue".into(),
        steps: 3,
        guidance: 5.0,
        seed: 42,
        width: 64,
        height: 64,
        ..Request::default()
    }
}

/// The images of a request, in the order the engine handed them out.
fn generate(req: &Request) -> Vec<GeneratedImage> {
    let mut images = Vec::new();
    let g = tiny()
        .generate(req, &Control::default(), &mut |_| {}, &mut |image| {
            images.push(image);
            Ok(())
        })
        .unwrap();
    assert_eq!(g.images, images.len());
    images
}

#[test]
fn same_seed_gives_identical_images_for_every_scheduler() {
    for kind in [
        SchedulerKind::Ddim,
        SchedulerKind::Euler,
        SchedulerKind::EulerAncestral,
        SchedulerKind::DpmPp2mKarras,
    ] {
        let req = Request {
            scheduler: Some(kind),
            ..request()
        };
        let a = generate(&req);
        let b = generate(&req);
        assert_eq!(a[0].rgb, b[0].rgb, "{kind:?} is not reproducible");
        assert_eq!(a[0].scheduler, kind);
        let other = generate(&Request {
            seed: 43,
            ..req.clone()
        });
        assert_ne!(a[0].rgb, other[0].rgb, "{kind:?} ignores the seed");
    }
}

#[test]
fn image_k_of_a_batch_is_remade_alone_with_seed_plus_k() {
    let batch = generate(&Request {
        count: 3,
        scheduler: Some(SchedulerKind::EulerAncestral),
        ..request()
    });
    assert_eq!(batch.len(), 3);
    let third = generate(&Request {
        seed: 44,
        scheduler: Some(SchedulerKind::EulerAncestral),
        ..request()
    });
    assert_eq!(batch[2].seed, 44);
    assert_eq!(batch[2].rgb, third[0].rgb);
    assert_eq!((batch[0].width, batch[0].height), (64, 64));
    assert_eq!(batch[0].rgb.len(), 64 * 64 * 3);
}

#[test]
fn non_square_sizes_work() {
    let g = generate(&Request {
        width: 96,
        height: 64,
        ..request()
    });
    assert_eq!((g[0].width, g[0].height), (96, 64));
}

#[test]
fn progress_reports_every_step_with_phases_eta_and_previews() {
    let mut seen = Vec::new();
    let req = Request {
        count: 2,
        preview_every: 1,
        ..request()
    };
    tiny()
        .generate(
            &req,
            &Control::default(),
            &mut |p| seen.push((p.phase, p.image, p.step, p.eta.is_some(), p.preview.clone())),
            &mut |_| Ok(()),
        )
        .unwrap();
    assert_eq!(seen[0].0, Phase::EncodingPrompt);
    let denoise: Vec<(usize, usize)> = seen
        .iter()
        .filter(|s| s.0 == Phase::Denoising)
        .map(|s| (s.1, s.2))
        .collect();
    assert_eq!(
        denoise,
        vec![
            (0, 0),
            (0, 1),
            (0, 2),
            (0, 3),
            (1, 0),
            (1, 1),
            (1, 2),
            (1, 3)
        ]
    );
    assert_eq!(seen.iter().filter(|s| s.0 == Phase::Decoding).count(), 2);
    assert!(
        seen.iter()
            .filter(|s| s.0 == Phase::Denoising && s.2 > 0)
            .all(|s| s.3),
        "ETA after the first step"
    );
    let previews: Vec<_> = seen.iter().filter_map(|s| s.4.clone()).collect();
    assert_eq!(
        previews.len(),
        4,
        "a preview after steps 1 and 2 of each image"
    );
    assert_eq!((previews[0].width, previews[0].height), (8, 8));
    assert_eq!(&previews[0].to_png()[..4], b"\x89PNG");
}

#[test]
fn cancel_stops_between_steps_without_an_image() {
    let control = Control::default();
    let mut last_step = 0;
    let err = tiny()
        .generate(
            &Request {
                steps: 10,
                ..request()
            },
            &control,
            &mut |p| {
                last_step = p.step;
                if p.phase == Phase::Denoising && p.step == 2 {
                    control.cancel();
                }
            },
            &mut |_| panic!("no image for a cancelled run"),
        )
        .unwrap_err();
    assert!(matches!(err, EngineError::Cancelled), "{err}");
    assert_eq!(last_step, 2);
}

#[test]
fn stop_after_current_finishes_the_image_in_progress() {
    let control = Control::default();
    let mut seeds = Vec::new();
    let g = tiny()
        .generate(
            &Request {
                count: 3,
                ..request()
            },
            &control,
            &mut |p| {
                if p.image == 0 && p.step == 1 {
                    control.stop_after_current();
                }
            },
            &mut |image| {
                seeds.push(image.seed);
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(g.images, 1);
    assert_eq!(seeds, [42]);
    assert!(g.stopped_early);
}

#[test]
fn an_image_the_caller_refuses_stops_the_run_with_its_reason() {
    let mut offered = 0;
    let err = tiny()
        .generate(
            &Request {
                count: 3,
                ..request()
            },
            &Control::default(),
            &mut |_| {},
            &mut |_| {
                offered += 1;
                Err("the disk is full".into())
            },
        )
        .unwrap_err();
    assert!(matches!(err, EngineError::ImageRefused(ref m) if m == "the disk is full"));
    assert_eq!(offered, 1, "no image is made after a refusal");
}

#[test]
fn the_smallest_size_is_what_the_unet_levels_allow() {
    // Two UNet levels and 8 pixels per latent cell: one cell at the deepest level is 16 pixels.
    let limits = tiny().limits();
    assert_eq!((limits.min_side, limits.side_step), (16, 8));
    let small = generate(&Request {
        width: 40,
        height: 16,
        ..request()
    });
    assert_eq!((small[0].width, small[0].height), (40, 16));
    let err = generate_err(&Request {
        width: 8,
        ..request()
    });
    assert!(
        err.contains("width must be a multiple of 8 between 16 and 2048"),
        "{err}"
    );
}

#[test]
fn guidance_at_most_one_runs_without_cfg() {
    struct Batch(Vec<usize>);
    impl selfdiffusion_engine::Observer for Batch {
        fn unet(
            &mut self,
            _i: usize,
            input: &candle_core::Tensor,
            _t: f64,
            _o: &candle_core::Tensor,
        ) {
            self.0.push(input.dims()[0]);
        }
    }
    let model = tiny();
    for (guidance, batch) in [(1.0, 1), (0.0, 1), (1.5, 2)] {
        let req = Request {
            guidance,
            ..request()
        };
        let cond = model
            .encode_prompts(&req, &mut selfdiffusion_engine::NoObserver)
            .unwrap();
        let mut seen = Batch(Vec::new());
        let mut noise = selfdiffusion_engine::SeededNoise::new(1);
        model
            .run_image(
                &req,
                SchedulerKind::Ddim,
                &cond,
                &mut noise,
                &Control::default(),
                &mut seen,
            )
            .unwrap();
        assert!(
            seen.0.iter().all(|b| *b == batch),
            "guidance {guidance}: batches {:?}",
            seen.0
        );
    }
}

#[test]
fn long_prompts_are_truncated_and_reported() {
    let long = "a red cat ".repeat(20);
    let tokens = tiny()
        .text()
        .unwrap()
        .first()
        .tokenizer
        .encode(&long)
        .unwrap();
    assert!(tokens.truncated);
    assert_eq!(tokens.ids.len(), 16);
    assert_eq!(
        (tokens.ids[0], tokens.ids[15]),
        (0, 1),
        "start and end tokens kept"
    );
    let short = tiny()
        .text()
        .unwrap()
        .first()
        .tokenizer
        .encode("A Cat")
        .unwrap();
    assert_eq!(
        short.ids[..5],
        [0, 3, 4, 1, 1],
        "lowercased, ended, padded with the pad token"
    );
    assert!(!short.truncated);
    let run = tiny()
        .generate(
            &Request {
                prompt: long,
                ..request()
            },
            &Control::default(),
            &mut |_| {},
            &mut |_| Ok(()),
        )
        .unwrap();
    assert!(run.prompt_truncated);
}

#[test]
fn bad_requests_are_refused_with_clear_messages() {
    let cases: Vec<(Request, &str)> = vec![
        (
            Request {
                steps: 0,
                ..request()
            },
            "steps must be between 1 and 150",
        ),
        (
            Request {
                steps: 151,
                ..request()
            },
            "steps must be between 1 and 150",
        ),
        (
            Request {
                width: 65,
                ..request()
            },
            "width must be a multiple of 8",
        ),
        (
            Request {
                height: 4096,
                ..request()
            },
            "height must be a multiple of 8 between 16 and 2048",
        ),
        (
            Request {
                guidance: -1.0,
                ..request()
            },
            "guidance must be between 0 and 30",
        ),
        (
            Request {
                count: 0,
                ..request()
            },
            "count must be between 1 and 16",
        ),
    ];
    for (req, expected) in cases {
        let err = tiny()
            .generate(&req, &Control::default(), &mut |_| {}, &mut |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn initial_latents_from_a_file_reproduce_the_seeded_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latents.safetensors");
    let mut noise = selfdiffusion_engine::SeededNoise::new(42);
    let latents = selfdiffusion_engine::NoiseSource::initial(&mut noise, &[1, 4, 8, 8]).unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("latents".to_string(), latents)]),
        &file,
    )
    .unwrap();
    let seeded = generate(&request());
    let from_file = generate(&Request {
        init_latents: Some(file),
        ..request()
    });
    assert_eq!(seeded[0].rgb, from_file[0].rgb);
    let wrong = generate_err(&Request {
        init_latents: Some(dir.path().join("nope.safetensors")),
        ..request()
    });
    assert!(wrong.contains("nope.safetensors"), "{wrong}");
    let mismatched = generate_err(&Request {
        init_latents: Some(dir.path().join("latents.safetensors")),
        width: 128,
        ..request()
    });
    assert!(mismatched.contains("shape"), "{mismatched}");
}

fn generate_err(req: &Request) -> String {
    tiny()
        .generate(req, &Control::default(), &mut |_| {}, &mut |_| Ok(()))
        .unwrap_err()
        .to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walk(from) {
        let rel = entry.strip_prefix(from).unwrap();
        std::fs::create_dir_all(to.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(&entry, to.join(rel)).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn load_err(dir: &Path) -> String {
    match StableDiffusion::load(dir, &Device::Cpu, DType::F32) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn broken_model_folders_name_the_file_and_tensor() {
    let good = tempfile::tempdir().unwrap();
    common::tiny_model(good.path());

    let missing = tempfile::tempdir().unwrap();
    copy_dir(good.path(), missing.path());
    std::fs::remove_file(
        missing
            .path()
            .join("vae/diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    assert!(load_err(missing.path()).contains("vae/diffusion_pytorch_model.safetensors"));

    let corrupt = tempfile::tempdir().unwrap();
    copy_dir(good.path(), corrupt.path());
    std::fs::write(
        corrupt
            .path()
            .join("unet/diffusion_pytorch_model.safetensors"),
        b"not safetensors",
    )
    .unwrap();
    assert!(load_err(corrupt.path()).contains("unet/diffusion_pytorch_model.safetensors"));

    let shape = tempfile::tempdir().unwrap();
    copy_dir(good.path(), shape.path());
    let cfg = std::fs::read_to_string(shape.path().join("text_encoder/config.json")).unwrap();
    std::fs::write(
        shape.path().join("text_encoder/config.json"),
        cfg.replace("\"intermediate_size\": 32", "\"intermediate_size\": 48"),
    )
    .unwrap();
    let err = load_err(shape.path());
    assert!(
        err.contains("text_encoder/model.safetensors") && err.contains("fc1"),
        "{err}"
    );

    let fp16 = tempfile::tempdir().unwrap();
    copy_dir(good.path(), fp16.path());
    std::fs::rename(
        fp16.path().join("unet/diffusion_pytorch_model.safetensors"),
        fp16.path()
            .join("unet/diffusion_pytorch_model.fp16.safetensors"),
    )
    .unwrap();
    StableDiffusion::load(fp16.path(), &Device::Cpu, DType::F32)
        .expect("the fp16 variant is found");

    let sd3 = tempfile::tempdir().unwrap();
    copy_dir(good.path(), sd3.path());
    std::fs::write(
        sd3.path().join("model_index.json"),
        r#"{"_class_name": "StableDiffusion3Pipeline"}"#,
    )
    .unwrap();
    let err = load_err(sd3.path());
    assert!(
        err.contains("StableDiffusion3Pipeline")
            && err.contains("Supported: Stable Diffusion 1.x, 2.x"),
        "{err}"
    );

    // An SD 1.x folder that says it is SDXL lacks the second text encoder, and says so.
    let xl = tempfile::tempdir().unwrap();
    copy_dir(good.path(), xl.path());
    std::fs::write(
        xl.path().join("model_index.json"),
        r#"{"_class_name": "StableDiffusionXLPipeline"}"#,
    )
    .unwrap();
    let err = load_err(xl.path());
    assert!(err.contains("text_encoder_2"), "{err}");

    let bad_sched = tempfile::tempdir().unwrap();
    copy_dir(good.path(), bad_sched.path());
    std::fs::write(
        bad_sched.path().join("scheduler/scheduler_config.json"),
        "{ not json",
    )
    .unwrap();
    assert!(load_err(bad_sched.path()).contains("scheduler_config.json"));
}

#[test]
fn the_engine_caches_one_model_and_turns_panics_into_errors() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    common::tiny_model(a.path());
    common::tiny_model(b.path());
    let engine = selfdiffusion_engine::Engine::new(Device::Cpu, DType::F32);
    let loads = |dir: &Path| {
        let spec = ModelSpec::folder(dir);
        let mut n = 0;
        engine
            .generate(
                &spec,
                &request(),
                &Control::default(),
                &mut |p| n += usize::from(p.phase == Phase::LoadingModel),
                &mut |_| Ok(()),
            )
            .unwrap();
        n
    };
    assert_eq!(loads(a.path()), 1);
    assert_eq!(loads(a.path()), 0, "the cached model is reused");
    assert_eq!(loads(b.path()), 1);
    assert!(
        engine.is_loaded(&ModelSpec::folder(b.path()))
            && !engine.is_loaded(&ModelSpec::folder(a.path())),
        "switching drops the old model"
    );

    let err = engine
        .generate(
            &ModelSpec::folder(b.path()),
            &request(),
            &Control::default(),
            &mut |p| {
                if p.phase == Phase::Denoising && p.step == 1 {
                    panic!("a bug in a progress handler");
                }
            },
            &mut |_| Ok(()),
        )
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Panicked(ref m) if m.contains("a bug")),
        "{err}"
    );
    assert_eq!(loads(b.path()), 0, "the engine still works after a panic");
}

#[test]
fn a_scheduler_config_with_python_infinity_loads() {
    // diffusers writes DPM++ configs with `"lambda_min_clipped": -Infinity`, which is not JSON.
    let dir = tempfile::tempdir().unwrap();
    common::tiny_model(dir.path());
    let file = dir.path().join("scheduler/scheduler_config.json");
    let text = std::fs::read_to_string(&file).unwrap();
    let patched = text.replacen(
        '{',
        "{\"lambda_min_clipped\": -Infinity, \"variance_type\": null, ",
        1,
    );
    std::fs::write(&file, patched).unwrap();
    StableDiffusion::load(dir.path(), &Device::Cpu, DType::F32).unwrap();
}

/// A half-precision VAE that overflows decodes again in f32 (read from disk on first need):
/// the image is the f32 model's, never a black or NaN one.
#[test]
fn a_half_precision_decode_that_overflows_is_redone_in_f32() {
    let dir = tempfile::tempdir().unwrap();
    common::tiny_model(dir.path());
    let half = StableDiffusion::load(dir.path(), &Device::Cpu, DType::F16).unwrap();
    let full = StableDiffusion::load(dir.path(), &Device::Cpu, DType::F32).unwrap();
    let req = request();
    // Beyond f16's range (65504) once divided by the scaling factor.
    let latents = (candle_core::Tensor::randn(0f32, 1.0, &full.latent_shape(&req), &Device::Cpu)
        .unwrap()
        * 3e4)
        .unwrap();
    let overflowed = half
        .vae
        .decoder
        .decode(
            &(&latents / half.vae_config.scaling_factor)
                .unwrap()
                .to_dtype(DType::F16)
                .unwrap(),
        )
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let sum = overflowed.sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(!sum.is_finite(), "the f16 decode did not overflow: {sum}");
    let decode = |model: &StableDiffusion| {
        model
            .decode(
                &latents,
                &mut common::Recorder::default(),
                0,
                SchedulerKind::Euler,
            )
            .unwrap()
            .rgb
    };
    let redone = decode(&half);
    let expected = decode(&full);
    let differing = redone.iter().zip(&expected).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 0, "values differing from the f32 model's image");
    assert!(redone.iter().any(|&v| v != 0), "a black image");
}
