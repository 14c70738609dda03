//! Text-to-image generation: encode the prompts, denoise with classifier-free guidance, decode.
//! Progress is reported every step; cancellation is checked between steps.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::{DType, IndexOp, Tensor};
use selfdiffusion_recipe::{HiresFix, Limits, LoraUse, Recipe, SizeConditions};

use crate::error::{EngineError, Result};
use crate::init_image::ImageInput;
use crate::model::StableDiffusion;
use crate::noise::{GivenNoise, NoiseSource, SeededNoise};
use crate::preview::Preview;
use crate::schedulers::{Scheduler, SchedulerKind};
use crate::text::TextEncoders;
use crate::unet::AddedCond;

/// The engine's own bounds on a request; a model narrows them ([`StableDiffusion::limits`]).
pub const LIMITS: Limits = Limits {
    min_side: 8,
    max_side: 2048,
    side_step: 8,
    max_steps: 150,
    max_count: 16,
    max_guidance: 30.0,
    max_prompt_chars: None,
};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Request {
    /// The prompt.
    pub prompt: String,
    /// What to steer away from. Empty means none: SDXL models then use zero embeddings
    /// (`force_zeros_for_empty_prompt`); SD 1.x / 2.x encode the empty prompt.
    pub negative_prompt: String,
    /// Denoising steps (1 to [`Limits::max_steps`]).
    pub steps: usize,
    /// Guidance scale; ≤ 1 runs without classifier-free guidance.
    pub guidance: f64,
    /// Seed of the first image; image k uses seed + k.
    pub seed: u64,
    /// Width in pixels, a multiple of the model's [`Limits::side_step`].
    pub width: usize,
    /// Height in pixels, a multiple of the model's [`Limits::side_step`].
    pub height: usize,
    /// Number of images.
    pub count: usize,
    /// Scheduler; `None` uses the model's own (or DDIM).
    pub scheduler: Option<SchedulerKind>,
    /// Initial latents from a safetensors file (key `latents`), for reproducibility and tests.
    pub init_latents: Option<PathBuf>,
    /// The noise img2img and inpainting draw, from a safetensors file with diffusers' names
    /// (`add_noise_noise`, `vae_sample_noise`; see [`GivenNoise::load`]), for parity checks.
    pub noise: Option<PathBuf>,
    /// An image to start from (img2img), with an optional mask (inpainting).
    pub init: Option<ImageInput>,
    /// A second pass at a larger size ("hires fix"); the image is `width`·factor wide.
    pub hires: Option<HiresFix>,
    /// Send a preview every this many steps (0 = never).
    pub preview_every: usize,
    /// SDXL's size conditions (ignored by other models).
    pub size_conditions: SizeConditions,
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
            noise: None,
            init: None,
            hires: None,
            preview_every: 0,
            size_conditions: SizeConditions::default(),
        }
    }
}

impl Request {
    /// Checks every field against `limits` (a model's, see [`StableDiffusion::limits`]).
    pub fn validate(&self, limits: &Limits) -> Result<()> {
        let side = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        limits
            .check(
                side(self.width),
                side(self.height),
                side(self.steps),
                side(self.count),
                self.guidance,
            )
            .map_err(EngineError::InvalidRequest)?;
        if let Some(hires) = &self.hires {
            hires.check().map_err(EngineError::InvalidRequest)?;
            let second = self.hires_pass(limits.side_step as usize, Vec::new());
            limits
                .check(
                    side(second.width),
                    side(second.height),
                    side(self.steps),
                    side(self.count),
                    self.guidance,
                )
                .map_err(|e| EngineError::InvalidRequest(format!("the hires pass: {e}")))?;
        }
        self.init.as_ref().map_or(Ok(()), ImageInput::validate)
    }

    /// The second pass of a hires fix, starting from `rgb` (the first pass's image): the size
    /// times the factor (rounded down to `step`), img2img at the hires strength.
    fn hires_pass(&self, step: usize, rgb: Vec<u8>) -> Request {
        let hires = self.hires.expect("a hires request");
        let (width, height) = hires.size(self.width as u32, self.height as u32, step as u32);
        let first = crate::init_image::Picture::from_pixels(self.width, self.height, rgb);
        Request {
            width: width as usize,
            height: height as usize,
            init: Some(ImageInput {
                image: std::sync::Arc::new(first),
                strength: hires.strength,
                mask: None,
                outpaint: None,
                paste_back: None,
            }),
            hires: None,
            init_latents: None,
            noise: None,
            ..self.clone()
        }
    }

    /// The steps that run for each image: all of them, or the share an image's strength asks
    /// for, and a hires pass's.
    pub fn steps_run(&self) -> usize {
        let first = self.steps
            - self
                .init
                .as_ref()
                .map_or(0, |input| input.first_step(self.steps));
        let second = self.hires.map_or(0, |h| {
            ((self.steps as f64 * h.strength) as usize).min(self.steps)
        });
        first + second
    }

    /// The recipe of `image`, made by this request on the model named `model`, generated by
    /// `backend` (`local`, `cloud`). Callers add what the engine does not know: the
    /// styles and the user's own prompts ([`Recipe::styled`]).
    pub fn recipe(&self, image: &GeneratedImage, model: &str, backend: &str) -> Recipe {
        Recipe {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            model: Some(model.to_owned()),
            scheduler: Some(image.scheduler.name().to_owned()),
            steps: Some(self.steps as u32),
            guidance: Some(self.guidance),
            seed: Some(image.seed),
            // A hires image records its first pass's size, as AUTOMATIC1111 does.
            width: Some(if self.hires.is_some() {
                self.width
            } else {
                image.width
            } as u32),
            height: Some(if self.hires.is_some() {
                self.height
            } else {
                image.height
            } as u32),
            hires: self.hires,
            backend: Some(backend.to_owned()),
            loras: image.loras.clone(),
            size_conditions: self.size_conditions,
            source: self.init.as_ref().map(ImageInput::recipe),
            ..Recipe::default()
        }
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

    /// The flag [`cancel`](Self::cancel) sets, for work that watches a plain flag (upscales).
    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
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
    /// The scheduler that denoised it.
    pub scheduler: SchedulerKind,
    /// The LoRAs merged into the model that made it.
    pub loras: Vec<LoraUse>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// RGB, 8 bits per channel, row-major.
    pub rgb: Vec<u8>,
}

/// What a finished image goes to: saved, written, collected. An error stops the request with
/// [`EngineError::ImageRefused`].
pub type ImageSink<'a> = dyn FnMut(GeneratedImage) -> std::result::Result<(), String> + 'a;

/// How a request went (its images went to the [`ImageSink`] one by one).
#[derive(Debug, Clone)]
pub struct Generation {
    /// How many images were made (fewer than asked when stopped after the current image).
    pub images: usize,
    /// The prompt was longer than the model reads and was cut.
    pub prompt_truncated: bool,
    /// The negative prompt was cut.
    pub negative_truncated: bool,
    /// Whether the batch was stopped early.
    pub stopped_early: bool,
    /// The scheduler used.
    pub scheduler: SchedulerKind,
    /// The inputs that were resized to the request's size ("the mask was resized from …").
    pub resized: Vec<String>,
}

/// Sees each stage's tensors (parity tests compare them with diffusers).
pub trait Observer {
    /// Token ids of the prompt and negative prompt.
    fn tokens(&mut self, _cond: &[u32], _uncond: &[u32]) {}
    /// Text embeddings (`uncond` is `None` without guidance).
    fn embeddings(&mut self, _cond: &Tensor, _uncond: Option<&Tensor>) {}
    /// The latents the loop starts from (noise, or the image noised to the first step's level).
    fn start(&mut self, _latents: &Tensor) {}
    /// The UNet's input, timestep and output at step `i` (counted from the first step run).
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
    /// SDXL: the pooled text and size ids, batched as `context`.
    pub added: Option<AddedCond>,
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
    /// Tokenizes and encodes the request's prompts (and, for SDXL, its size ids).
    pub fn encode_prompts(
        &self,
        req: &Request,
        observer: &mut dyn Observer,
    ) -> Result<Conditioning> {
        let text = self.text()?;
        let cond = text.encode(&req.prompt, &self.device)?;
        let guided = req.guidance > 1.0;
        let zeros = req.negative_prompt.is_empty() && text.zeros_for_missing_negative();
        let uncond = match (guided, zeros) {
            (false, _) => None,
            (true, true) => Some(TextEncoders::zeros_like(&cond)?),
            (true, false) => Some(text.encode(&req.negative_prompt, &self.device)?),
        };
        observer.tokens(
            &cond.ids,
            uncond
                .as_ref()
                .map(|u| u.ids.as_slice())
                .unwrap_or_default(),
        );
        observer.embeddings(&cond.context, uncond.as_ref().map(|u| &u.context));
        if cond.truncated {
            tracing::warn!(
                "prompt is longer than {} tokens; the end was cut",
                text.max_len()
            );
        }
        // [uncond; cond] with guidance, else cond alone.
        let batched = |c: &Tensor, u: Option<&Tensor>| -> Result<Tensor> {
            Ok(match u {
                Some(u) => Tensor::cat(&[u, c], 0)?,
                None => c.clone(),
            })
        };
        let context = batched(&cond.context, uncond.as_ref().map(|u| &u.context))?;
        let added = match &cond.pooled {
            Some(pooled) => {
                let text_embeds = batched(pooled, uncond.as_ref().and_then(|u| u.pooled.as_ref()))?;
                let time_ids = self.time_ids(req, text_embeds.dim(0)?)?;
                Some(AddedCond {
                    text_embeds,
                    time_ids,
                })
            }
            None => None,
        };
        Ok(Conditioning {
            context,
            added,
            guided,
            prompt_truncated: cond.truncated,
            negative_truncated: uncond.is_some_and(|u| u.truncated),
        })
    }

    /// SDXL's six size ids for the request's size, one row per batch row.
    fn time_ids(&self, req: &Request, rows: usize) -> Result<Tensor> {
        let ids = req
            .size_conditions
            .time_ids(req.width as u32, req.height as u32)
            .map(|v| v as f32);
        Ok(Tensor::new(&ids, &self.device)?
            .unsqueeze(0)?
            .repeat((rows, 1))?)
    }

    /// The same prompts for `req`'s size (SDXL's size ids follow it; nothing else changes).
    fn resized(&self, cond: &Conditioning, req: &Request) -> Result<Conditioning> {
        let added = match &cond.added {
            Some(added) => Some(AddedCond {
                text_embeds: added.text_embeds.clone(),
                time_ids: self.time_ids(req, added.text_embeds.dim(0)?)?,
            }),
            None => None,
        };
        Ok(Conditioning {
            context: cond.context.clone(),
            added,
            guided: cond.guided,
            prompt_truncated: cond.prompt_truncated,
            negative_truncated: cond.negative_truncated,
        })
    }

    /// Shape of the latents for a request.
    pub fn latent_shape(&self, req: &Request) -> [usize; 4] {
        let s = self.vae_config.scale_factor();
        [
            1,
            self.vae_config.latent_channels,
            req.height / s,
            req.width / s,
        ]
    }

    /// Generates every image of a request (image k with seed + k, the prompts encoded once),
    /// handing each to `on_image` as soon as it is decoded.
    pub fn generate(
        &self,
        req: &Request,
        control: &Control,
        progress: &mut dyn FnMut(&Progress),
        on_image: &mut ImageSink<'_>,
    ) -> Result<Generation> {
        req.validate(&self.limits())?;
        let scheduler = req
            .scheduler
            .or(self.default_scheduler)
            .unwrap_or(SchedulerKind::Ddim);
        // Given noise is read before anything runs, so a bad file fails at once; it is the
        // first image's.
        let mut given = (req.init_latents.is_some() || req.noise.is_some())
            .then(|| GivenNoise::load(req.init_latents.as_deref(), req.noise.as_deref(), req.seed))
            .transpose()?;
        let steps = req.steps_run();
        // The first pass's steps (all of them without a hires fix).
        let first_steps = Request {
            hires: None,
            ..req.clone()
        }
        .steps_run();
        let mut clock = Clock {
            start: Instant::now(),
            denoise_time: Duration::ZERO,
            steps_done: 0,
            total_steps: steps * req.count,
        };
        let report =
            |phase, image, step, clock: &Clock, preview, progress: &mut dyn FnMut(&Progress)| {
                progress(&Progress {
                    phase,
                    image,
                    images: req.count,
                    step,
                    steps,
                    elapsed: clock.start.elapsed(),
                    eta: clock.eta(),
                    preview,
                })
            };
        report(Phase::EncodingPrompt, 0, 0, &clock, None, progress);
        let cond = self.encode_prompts(req, &mut NoObserver)?;
        self.after_encoding();
        let mut images = 0;
        let mut stopped_early = false;
        let mut resized = Vec::new();
        for k in 0..req.count {
            if k > 0 && control.stopping() {
                stopped_early = true;
                break;
            }
            let seed = req.seed.wrapping_add(k as u64);
            let mut noise: Box<dyn NoiseSource> = match given.take() {
                Some(given) => Box::new(given),
                None => Box::new(SeededNoise::new(seed)),
            };
            let (mut image, notes) = self.denoise_and_decode(
                req,
                scheduler,
                &cond,
                noise.as_mut(),
                control,
                &mut NoObserver,
                &mut |i, preview, clock| report(Phase::Denoising, k, i, clock, preview, progress),
                &mut clock,
            )?;
            resized = notes;
            if req.hires.is_some() {
                // The second pass: the image enlarged, redrawn at the hires strength with the
                // same seed's next draws.
                let second = req.hires_pass(self.limits().side_step as usize, image.rgb);
                let cond = self.resized(&cond, &second)?;
                (image, _) = self.denoise_and_decode(
                    &second,
                    scheduler,
                    &cond,
                    noise.as_mut(),
                    control,
                    &mut NoObserver,
                    &mut |i, preview, clock| {
                        report(
                            Phase::Denoising,
                            k,
                            first_steps + i,
                            clock,
                            preview,
                            progress,
                        )
                    },
                    &mut clock,
                )?;
            }
            report(Phase::Decoding, k, steps, &clock, None, progress);
            on_image(GeneratedImage { seed, ..image }).map_err(EngineError::ImageRefused)?;
            images += 1;
        }
        Ok(Generation {
            images,
            prompt_truncated: cond.prompt_truncated,
            negative_truncated: cond.negative_truncated,
            stopped_early,
            scheduler,
            resized,
        })
    }

    /// Denoises one image from `noise` and decodes it (the whole loop, for one seed; a hires
    /// fix's second pass is [`StableDiffusion::generate`]'s).
    pub fn run_image(
        &self,
        req: &Request,
        scheduler: SchedulerKind,
        cond: &Conditioning,
        noise: &mut dyn NoiseSource,
        control: &Control,
        observer: &mut dyn Observer,
    ) -> Result<GeneratedImage> {
        req.validate(&self.limits())?;
        let mut clock = Clock {
            start: Instant::now(),
            denoise_time: Duration::ZERO,
            steps_done: 0,
            total_steps: req.steps_run(),
        };
        let (image, _) = self.denoise_and_decode(
            req,
            scheduler,
            cond,
            noise,
            control,
            observer,
            &mut |_, _, _| {},
            &mut clock,
        )?;
        Ok(image)
    }

    /// The image and the notes on inputs resized to fit the request.
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
    ) -> Result<(GeneratedImage, Vec<String>)> {
        let shape = self.latent_shape(req);
        let mut scheduler = Scheduler::new(kind, &self.schedule, req.steps);
        let timesteps = scheduler.timesteps().to_vec();
        let start = self.start(req, &scheduler, noise, &shape)?;
        let mut latents = start.latents.clone();
        observer.start(&latents);
        on_step(0, None, clock);
        for (run, i) in (start.first..timesteps.len()).enumerate() {
            if control.cancelled() {
                return Err(EngineError::Cancelled);
            }
            let started = Instant::now();
            let t = timesteps[i];
            let input = if cond.guided {
                Tensor::cat(&[&latents, &latents], 0)?
            } else {
                latents.clone()
            };
            let input = start.unet_input(scheduler.scale_model_input(&input, i)?)?;
            let output = self
                .unet
                .forward(
                    &input.to_dtype(self.dtype)?,
                    t,
                    &cond.context,
                    cond.added.as_ref(),
                )?
                .to_dtype(DType::F32)?;
            observer.unet(run, &input, t, &output);
            let noise_pred = if cond.guided {
                let (u, c) = (output.i(0..1)?, output.i(1..2)?);
                (&u + ((c - &u)? * req.guidance)?)?
            } else {
                output
            };
            observer.guided(run, &noise_pred);
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
            latents = start.after_step(&scheduler, i, latents)?;
            observer.latents(run, &latents);
            // Reading a value back waits for the device, so the step's time is real.
            latents.i((0, 0, 0, 0))?.to_scalar::<f32>()?;
            clock.denoise_time += started.elapsed();
            clock.steps_done += 1;
            let done = run + 1;
            let preview =
                (req.preview_every > 0 && done % req.preview_every == 0 && i + 1 < timesteps.len())
                    .then(|| Preview::from_latents(&latents))
                    .transpose()?
                    .flatten();
            on_step(done, preview, clock);
        }
        if control.cancelled() {
            return Err(EngineError::Cancelled);
        }
        let mut image = self.decode(&latents, observer, req.seed, kind)?;
        start.finish(&mut image.rgb);
        Ok((image, start.resized))
    }

    /// Decodes latents (denoised from `seed` by `scheduler`) into an 8-bit RGB image.
    pub fn decode(
        &self,
        latents: &Tensor,
        observer: &mut dyn Observer,
        seed: u64,
        scheduler: SchedulerKind,
    ) -> Result<GeneratedImage> {
        let unscaled = (latents / self.vae_config.scaling_factor)?;
        let decoded = self
            .vae
            .decoder
            .decode(&unscaled.to_dtype(self.vae_dtype)?)?
            .to_dtype(DType::F32)?;
        // A half-precision VAE can overflow (SD 1.x's on some latents): never a black image,
        // decode again in f32.
        let decoded = if self.vae_dtype != DType::F32 && !all_finite(&decoded)? {
            tracing::warn!(dtype = ?self.vae_dtype, "the VAE overflowed; decoding again in f32");
            self.f32_vae()?
                .decoder
                .decode(&unscaled.to_dtype(DType::F32)?)?
        } else {
            decoded
        };
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
            scheduler,
            loras: self.loras.clone(),
            width,
            height,
            rgb,
        })
    }
}

/// Whether every value of `t` (f32) is finite: a NaN or an infinity makes the sum non-finite.
fn all_finite(t: &Tensor) -> Result<bool> {
    Ok(t.sum_all()?.to_scalar::<f32>()?.is_finite())
}
