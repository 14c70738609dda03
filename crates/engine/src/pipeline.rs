//! Text-to-image generation: encode the prompts, denoise with classifier-free guidance, decode.
//! Progress is reported every step; cancellation is checked between steps.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::{DType, IndexOp, Tensor};

use crate::error::{EngineError, Result};
use crate::model::StableDiffusion;
use crate::noise::{GivenLatents, NoiseSource, SeededNoise};
use crate::preview::Preview;
use crate::schedulers::{Scheduler, SchedulerKind};

/// Most steps a request may ask for.
pub const MAX_STEPS: usize = 150;
/// Smallest and largest image side, in pixels.
pub const SIZE_RANGE: (usize, usize) = (64, 2048);
/// Most images per request.
pub const MAX_COUNT: usize = 16;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Request {
    /// The prompt.
    pub prompt: String,
    /// What to steer away from.
    pub negative_prompt: String,
    /// Denoising steps (1–150).
    pub steps: usize,
    /// Guidance scale; ≤ 1 runs without classifier-free guidance.
    pub guidance: f64,
    /// Seed of the first image; image k uses seed + k.
    pub seed: u64,
    /// Width in pixels, a multiple of the VAE scale factor (8).
    pub width: usize,
    /// Height in pixels, a multiple of the VAE scale factor (8).
    pub height: usize,
    /// Number of images.
    pub count: usize,
    /// Scheduler; `None` uses the model's own (or DDIM).
    pub scheduler: Option<SchedulerKind>,
    /// Initial latents from a safetensors file (key `latents`), for reproducibility and tests.
    pub init_latents: Option<PathBuf>,
    /// Send a preview every this many steps (0 = never).
    pub preview_every: usize,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            prompt: String::new(),
            negative_prompt: String::new(),
            steps: 30,
            guidance: 7.5,
            seed: 0,
            width: 512,
            height: 512,
            count: 1,
            scheduler: None,
            init_latents: None,
            preview_every: 0,
        }
    }
}

impl Request {
    /// Checks every field; `scale` is the VAE's pixels per latent cell.
    pub fn validate(&self, scale: usize) -> Result<()> {
        let bad = |m: String| Err(EngineError::InvalidRequest(m));
        if self.steps == 0 || self.steps > MAX_STEPS {
            return bad(format!(
                "steps must be between 1 and {MAX_STEPS} (got {})",
                self.steps
            ));
        }
        if !self.guidance.is_finite() || self.guidance < 0.0 {
            return bad(format!(
                "guidance must be 0 or more (got {})",
                self.guidance
            ));
        }
        for (name, v) in [("width", self.width), ("height", self.height)] {
            if v % scale != 0 {
                return bad(format!("{name} must be a multiple of {scale} (got {v})"));
            }
            if v < SIZE_RANGE.0 || v > SIZE_RANGE.1 {
                return bad(format!(
                    "{name} must be between {} and {} (got {v})",
                    SIZE_RANGE.0, SIZE_RANGE.1
                ));
            }
        }
        if self.count == 0 || self.count > MAX_COUNT {
            return bad(format!(
                "count must be between 1 and {MAX_COUNT} (got {})",
                self.count
            ));
        }
        Ok(())
    }
}

/// What the pipeline is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Loading weights.
    LoadingModel,
    /// Running the text encoder.
    EncodingPrompt,
    /// Denoising.
    Denoising,
    /// Running the VAE decoder.
    Decoding,
}

/// A progress report.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Current phase.
    pub phase: Phase,
    /// Index of the image being made (0-based).
    pub image: usize,
    /// Images in the request.
    pub images: usize,
    /// Steps done for this image.
    pub step: usize,
    /// Steps per image.
    pub steps: usize,
    /// Time since the request started.
    pub elapsed: Duration,
    /// Estimated time left for the whole request, from the measured time per step.
    pub eta: Option<Duration>,
    /// A cheap preview of the current latents, when asked for.
    pub preview: Option<Preview>,
}

/// Cancels a run, or stops a batch after the current image.
#[derive(Debug, Default)]
pub struct Control {
    cancel: AtomicBool,
    stop_after_current: AtomicBool,
}

impl Control {
    /// Stops at the next step; the unfinished image is dropped.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Finishes the current image, then stops.
    pub fn stop_after_current(&self) {
        self.stop_after_current.store(true, Ordering::Relaxed);
    }

    /// Whether a cancel was asked for.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Whether a stop after the current image was asked for.
    pub fn stopping(&self) -> bool {
        self.stop_after_current.load(Ordering::Relaxed)
    }
}

/// One finished image.
#[derive(Debug, Clone)]
pub struct GeneratedImage {
    /// The seed that remakes it alone.
    pub seed: u64,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// RGB, 8 bits per channel, row-major.
    pub rgb: Vec<u8>,
}

/// The result of a request.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The images made (fewer than asked when stopped after the current image).
    pub images: Vec<GeneratedImage>,
    /// The prompt was longer than the model reads and was cut.
    pub prompt_truncated: bool,
    /// The negative prompt was cut.
    pub negative_truncated: bool,
    /// Whether the batch was stopped early.
    pub stopped_early: bool,
    /// The scheduler used.
    pub scheduler: SchedulerKind,
}

/// Sees each stage's tensors (parity tests compare them with diffusers).
pub trait Observer {
    /// Token ids of the prompt and negative prompt.
    fn tokens(&mut self, _cond: &[u32], _uncond: &[u32]) {}
    /// Text embeddings (`uncond` is `None` without guidance).
    fn embeddings(&mut self, _cond: &Tensor, _uncond: Option<&Tensor>) {}
    /// The UNet's input, timestep and output at step `i`.
    fn unet(&mut self, _i: usize, _input: &Tensor, _t: f64, _output: &Tensor) {}
    /// The noise prediction after guidance at step `i`.
    fn guided(&mut self, _i: usize, _noise_pred: &Tensor) {}
    /// The latents after step `i`.
    fn latents(&mut self, _i: usize, _latents: &Tensor) {}
    /// The decoded image, `[1, H, W, 3]` in 0..1.
    fn image(&mut self, _image: &Tensor) {}
}

/// An observer that looks at nothing.
pub struct NoObserver;
impl Observer for NoObserver {}

/// Encoded prompts for a request.
pub struct Conditioning {
    /// `[uncond; cond]` with guidance, else `cond`, in the model dtype.
    pub context: Tensor,
    /// Whether classifier-free guidance is on.
    pub guided: bool,
    /// The prompt was cut.
    pub prompt_truncated: bool,
    /// The negative prompt was cut.
    pub negative_truncated: bool,
}

/// Timing shared by the progress reports of a request.
struct Clock {
    start: Instant,
    denoise_time: Duration,
    steps_done: usize,
    total_steps: usize,
}

impl Clock {
    fn eta(&self) -> Option<Duration> {
        (self.steps_done > 0).then(|| {
            self.denoise_time / self.steps_done as u32 * (self.total_steps - self.steps_done) as u32
        })
    }
}

impl StableDiffusion {
    /// Tokenizes and encodes the prompts.
    pub fn encode_prompts(
        &self,
        prompt: &str,
        negative: &str,
        guidance: f64,
        observer: &mut dyn Observer,
    ) -> Result<Conditioning> {
        let cond = self.tokenizer.encode(prompt)?;
        let uncond = self.tokenizer.encode(negative)?;
        observer.tokens(&cond.ids, &uncond.ids);
        let encode = |ids: &[u32]| -> Result<Tensor> {
            let ids = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
            self.text_encoder.forward(&ids)
        };
        let cond_emb = encode(&cond.ids)?;
        let guided = guidance > 1.0;
        let (context, uncond_emb) = if guided {
            let u = encode(&uncond.ids)?;
            (Tensor::cat(&[&u, &cond_emb], 0)?, Some(u))
        } else {
            (cond_emb.clone(), None)
        };
        observer.embeddings(&cond_emb, uncond_emb.as_ref());
        if cond.truncated {
            tracing::warn!(
                "prompt is longer than {} tokens; the end was cut",
                self.tokenizer.max_len()
            );
        }
        Ok(Conditioning {
            context,
            guided,
            prompt_truncated: cond.truncated,
            negative_truncated: guided && uncond.truncated,
        })
    }

    /// Shape of the latents for a request.
    pub fn latent_shape(&self, req: &Request) -> [usize; 4] {
        let s = self.vae_config.scale_factor();
        [
            1,
            self.unet_config.in_channels,
            req.height / s,
            req.width / s,
        ]
    }

    /// Generates every image of a request.
    pub fn generate(
        &self,
        req: &Request,
        control: &Control,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Generation> {
        req.validate(self.vae_config.scale_factor())?;
        let scheduler = req
            .scheduler
            .or(self.default_scheduler)
            .unwrap_or(SchedulerKind::Ddim);
        let given = req
            .init_latents
            .as_ref()
            .map(|p| load_latents(p))
            .transpose()?;
        let mut clock = Clock {
            start: Instant::now(),
            denoise_time: Duration::ZERO,
            steps_done: 0,
            total_steps: req.steps * req.count,
        };
        let report =
            |phase, image, step, clock: &Clock, preview, progress: &mut dyn FnMut(&Progress)| {
                progress(&Progress {
                    phase,
                    image,
                    images: req.count,
                    step,
                    steps: req.steps,
                    elapsed: clock.start.elapsed(),
                    eta: clock.eta(),
                    preview,
                })
            };
        report(Phase::EncodingPrompt, 0, 0, &clock, None, progress);
        let cond = self.encode_prompts(
            &req.prompt,
            &req.negative_prompt,
            req.guidance,
            &mut NoObserver,
        )?;
        let mut images = Vec::with_capacity(req.count);
        let mut stopped_early = false;
        for k in 0..req.count {
            if k > 0 && control.stopping() {
                stopped_early = true;
                break;
            }
            let seed = req.seed.wrapping_add(k as u64);
            let mut noise: Box<dyn NoiseSource> = match (&given, k) {
                (Some(latents), 0) => Box::new(GivenLatents::new(latents.clone(), seed)),
                _ => Box::new(SeededNoise::new(seed)),
            };
            let image = self.denoise_and_decode(
                req,
                scheduler,
                &cond,
                noise.as_mut(),
                control,
                &mut NoObserver,
                &mut |i, preview, clock| report(Phase::Denoising, k, i, clock, preview, progress),
                &mut clock,
            )?;
            report(Phase::Decoding, k, req.steps, &clock, None, progress);
            images.push(GeneratedImage { seed, ..image });
        }
        Ok(Generation {
            images,
            prompt_truncated: cond.prompt_truncated,
            negative_truncated: cond.negative_truncated,
            stopped_early,
            scheduler,
        })
    }

    /// Denoises one image from `noise` and decodes it (the whole loop, for one seed).
    pub fn run_image(
        &self,
        req: &Request,
        scheduler: SchedulerKind,
        cond: &Conditioning,
        noise: &mut dyn NoiseSource,
        control: &Control,
        observer: &mut dyn Observer,
    ) -> Result<GeneratedImage> {
        req.validate(self.vae_config.scale_factor())?;
        let mut clock = Clock {
            start: Instant::now(),
            denoise_time: Duration::ZERO,
            steps_done: 0,
            total_steps: req.steps,
        };
        self.denoise_and_decode(
            req,
            scheduler,
            cond,
            noise,
            control,
            observer,
            &mut |_, _, _| {},
            &mut clock,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn denoise_and_decode(
        &self,
        req: &Request,
        kind: SchedulerKind,
        cond: &Conditioning,
        noise: &mut dyn NoiseSource,
        control: &Control,
        observer: &mut dyn Observer,
        on_step: &mut dyn FnMut(usize, Option<Preview>, &Clock),
        clock: &mut Clock,
    ) -> Result<GeneratedImage> {
        let shape = self.latent_shape(req);
        let mut scheduler = Scheduler::new(kind, &self.schedule, req.steps);
        let timesteps = scheduler.timesteps().to_vec();
        let mut latents = (noise
            .initial(&shape)?
            .to_device(&self.device)?
            .to_dtype(DType::F32)?
            * scheduler.init_noise_sigma())?;
        on_step(0, None, clock);
        for (i, &t) in timesteps.iter().enumerate() {
            if control.cancelled() {
                return Err(EngineError::Cancelled);
            }
            let started = Instant::now();
            let input = if cond.guided {
                Tensor::cat(&[&latents, &latents], 0)?
            } else {
                latents.clone()
            };
            let input = scheduler.scale_model_input(&input, i)?;
            let output = self
                .unet
                .forward(&input.to_dtype(self.dtype)?, t, &cond.context)?
                .to_dtype(DType::F32)?;
            observer.unet(i, &input, t, &output);
            let noise_pred = if cond.guided {
                let (u, c) = (output.i(0..1)?, output.i(1..2)?);
                (&u + ((c - &u)? * req.guidance)?)?
            } else {
                output
            };
            observer.guided(i, &noise_pred);
            let step_noise = if scheduler.needs_noise() {
                Some(
                    noise
                        .step(&shape, i)?
                        .to_device(&self.device)?
                        .to_dtype(DType::F32)?,
                )
            } else {
                None
            };
            latents = scheduler.step(&noise_pred, i, &latents, step_noise.as_ref())?;
            observer.latents(i, &latents);
            // Reading a value back waits for the device, so the step's time is real.
            latents.i((0, 0, 0, 0))?.to_scalar::<f32>()?;
            clock.denoise_time += started.elapsed();
            clock.steps_done += 1;
            let preview =
                (req.preview_every > 0 && (i + 1) % req.preview_every == 0 && i + 1 < req.steps)
                    .then(|| Preview::from_latents(&latents))
                    .transpose()?
                    .flatten();
            on_step(i + 1, preview, clock);
        }
        if control.cancelled() {
            return Err(EngineError::Cancelled);
        }
        self.decode(&latents, observer, req.seed)
    }

    /// Decodes latents into an 8-bit RGB image.
    pub fn decode(
        &self,
        latents: &Tensor,
        observer: &mut dyn Observer,
        seed: u64,
    ) -> Result<GeneratedImage> {
        let scaled = (latents / self.vae_config.scaling_factor)?.to_dtype(self.dtype)?;
        let decoded = self.vae.decode(&scaled)?.to_dtype(DType::F32)?;
        let image = ((decoded / 2.0)? + 0.5)?
            .clamp(0f32, 1f32)?
            .permute((0, 2, 3, 1))?
            .contiguous()?;
        observer.image(&image);
        let (_, height, width, _) = image.dims4()?;
        let rgb = (image * 255.0)?
            .round()?
            .to_dtype(DType::U8)?
            .flatten_all()?
            .to_vec1::<u8>()?;
        Ok(GeneratedImage {
            seed,
            width,
            height,
            rgb,
        })
    }
}

/// Reads initial latents (`latents`, or the only tensor) from a safetensors file.
pub fn load_latents(path: &std::path::Path) -> Result<Tensor> {
    let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu).map_err(|e| {
        EngineError::Weights {
            file: path.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    let tensor = match tensors.get("latents") {
        Some(t) => t.clone(),
        None if tensors.len() == 1 => tensors.into_values().next().expect("one tensor"),
        None => {
            return Err(EngineError::Weights {
                file: path.to_path_buf(),
                reason: "no tensor named \"latents\"".into(),
            })
        }
    };
    Ok(tensor.to_dtype(DType::F32)?)
}
