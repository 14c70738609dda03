//! Running one job on the engine: generating its images (or upscaling one), each handed out as
//! a finished PNG with its recipe as soon as it exists. The one-box queue writes them to its
//! folder; a scale-out worker puts them in object storage. Both run this.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use selfdiffusion_engine::{Control, Device, Engine, ModelSpec, Phase, Request, Upscaler};
use selfdiffusion_recipe::encode_png;

use crate::request::{JobRequest, UpscaleJob};

/// What a job does: generate images, or upscale one.
#[derive(Debug, Clone)]
pub enum Work {
    /// A `generate` request.
    Generate(Box<JobRequest>),
    /// An `upscale` request.
    Upscale(Box<UpscaleJob>),
}

impl From<JobRequest> for Work {
    fn from(request: JobRequest) -> Self {
        Work::Generate(Box::new(request))
    }
}

impl From<UpscaleJob> for Work {
    fn from(job: UpscaleJob) -> Self {
        Work::Upscale(Box::new(job))
    }
}

/// How far a running job is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Steps {
    /// Denoising steps done, over all its images.
    pub done: usize,
    /// Denoising steps in all.
    pub total: usize,
    /// The engine's estimate of the time left.
    pub eta: Option<Duration>,
}

impl Steps {
    /// 0..1.
    pub fn fraction(&self) -> f64 {
        (self.done as f64 / self.total.max(1) as f64).min(1.0)
    }
}

/// Where a job's images go: called with each image's index and PNG bytes; an error stops the
/// job with that message.
pub type Save<'a> = dyn FnMut(usize, Vec<u8>) -> Result<(), String> + 'a;

/// The engine with the model it serves: runs jobs.
pub struct Runner {
    /// The engine (one model, shared by the workers).
    pub engine: Arc<Engine>,
    /// The model it serves.
    pub model: ModelSpec,
    /// The model's name for recipes.
    pub model_name: String,
    /// The ESRGAN upscaler of `upscale` jobs (Lanczos without one), and the device it runs on.
    pub upscaler: Option<(Arc<Upscaler>, Device)>,
}

impl Runner {
    /// Runs job `id`: reports progress to `progress` and hands each image to `save`; returns
    /// how many images were saved.
    pub fn run(
        &self,
        id: &str,
        work: &Work,
        control: &Control,
        progress: &mut dyn FnMut(Steps),
        save: &mut Save<'_>,
    ) -> Result<usize, String> {
        match work {
            Work::Generate(job) => self.generate(id, job, control, progress, save),
            Work::Upscale(job) => self.upscale(id, job, control, progress, save),
        }
    }

    /// Upscales the job's image with the server's ESRGAN model (or Lanczos), its recipe kept
    /// with how it was upscaled; saves 1 image. Its progress counts tiles.
    fn upscale(
        &self,
        id: &str,
        job: &UpscaleJob,
        control: &Control,
        progress: &mut dyn FnMut(Steps),
        save: &mut Save<'_>,
    ) -> Result<usize, String> {
        let upscaler = self.upscaler.as_ref().map(|(u, d)| (&**u, d));
        let (larger, how) = selfdiffusion_engine::upscale(
            &job.picture,
            job.factor,
            upscaler,
            selfdiffusion_engine::MAX_INPUT_PIXELS,
            control.cancel_flag(),
            &mut |p| {
                progress(Steps {
                    done: p.done,
                    total: p.total,
                    eta: p.eta,
                })
            },
        )
        .map_err(|e| e.to_string())?;
        let mut recipe = job.recipe.clone();
        recipe.upscale = Some(how);
        recipe.job_id = Some(id.to_owned());
        let png = encode_png(
            larger.width as u32,
            larger.height as u32,
            &larger.rgb,
            &recipe,
        )
        .map_err(|e| e.to_string())?;
        save(0, png)?;
        Ok(1)
    }

    /// Generates the job's images, each saved (recipe embedded) as soon as the engine hands it
    /// out, so clients can fetch the first while the next is made.
    fn generate(
        &self,
        id: &str,
        job: &JobRequest,
        control: &Control,
        progress: &mut dyn FnMut(Steps),
        save: &mut Save<'_>,
    ) -> Result<usize, String> {
        let request = Request {
            prompt: job.prompt.clone(),
            negative_prompt: job.negative_prompt.clone(),
            steps: job.steps,
            guidance: job.guidance,
            seed: job.seed,
            width: job.width,
            height: job.height,
            count: job.samples,
            init: job.init.clone(),
            hires: job.hires,
            ..Request::default()
        };
        let total = (job.samples * request.steps_run()).max(1);
        let mut written = 0;
        self.engine
            .generate(
                &ModelSpec {
                    loras: job.loras.clone(),
                    ..self.model.clone()
                },
                &request,
                control,
                &mut |p| {
                    if p.phase == Phase::Denoising {
                        progress(Steps {
                            done: (p.image * p.steps + p.step).min(total),
                            total,
                            eta: p.eta,
                        });
                    }
                },
                &mut |image| {
                    let mut recipe = request.recipe(&image, &self.model_name, "cloud").styled(
                        job.styles.clone(),
                        &job.user_prompt,
                        &job.user_negative_prompt,
                    );
                    recipe.job_id = Some(id.to_owned());
                    let png =
                        encode_png(image.width as u32, image.height as u32, &image.rgb, &recipe)
                            .map_err(|e| e.to_string())?;
                    save(written, png)?;
                    written += 1;
                    Ok(())
                },
            )
            .map_err(|e| e.to_string())?;
        Ok(written)
    }
}

/// The file of image `index` of job `id` under `images_dir` (one-box mode).
pub fn image_path(images_dir: &std::path::Path, id: &str, index: usize) -> PathBuf {
    images_dir.join(id).join(format!("{index}.png"))
}
