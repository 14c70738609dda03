//! Jobs in the app: local jobs on the core's queue and engine, merged with cloud jobs into one
//! job list (`list_jobs`, `job-changed`, `job-progress`), with cancel and stop-after-current.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use selfdiffusion_engine::{default_dtype, DeviceChoice, Engine, SchedulerKind};
use selfdiffusion_library::Library;
use selfdiffusion_queue::{JobId, JobInfo, JobProgress, JobSpec, Queue, QueueEvent};
use selfdiffusion_recipe::{take_lora_tags, HiresFix, SizeConditions};
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Emitter, Manager, State};

use crate::cloud::{Cloud, CloudJobInfo};
use crate::error::{blocking, CmdResult, CommandError};
use crate::events;
use crate::state::AppState;
use crate::styles::Styles;

/// The queue and the engine it runs on, made on first use for the open library.
#[derive(Default)]
pub struct LocalJobs {
    queue: Mutex<Option<(PathBuf, Arc<Queue>)>>,
    engine: Mutex<Option<Arc<Engine>>>,
}

impl LocalJobs {
    fn engine(&self) -> CmdResult<Arc<Engine>> {
        let mut engine = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = engine.as_ref() {
            return Ok(e.clone());
        }
        let device = DeviceChoice::Auto.open()?;
        let made = Arc::new(
            Engine::new(device.clone(), default_dtype(&device))
                .with_low_memory(selfdiffusion_engine::low_memory_requested())
                .with_half_weights(selfdiffusion_engine::half_weights_requested()),
        );
        *engine = Some(made.clone());
        Ok(made)
    }

    /// The queue for `library`, started (or restarted after a library switch) as needed.
    fn queue(&self, app: &AppHandle, library: Arc<Library>) -> CmdResult<Arc<Queue>> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((root, q)) = queue.as_ref() {
            if root == library.root() {
                return Ok(q.clone());
            }
        }
        let app = app.clone();
        let root = library.root().to_path_buf();
        let q = Arc::new(Queue::new(self.engine()?, library, move |event| {
            emit(&app, event)
        }));
        *queue = Some((root, q.clone()));
        Ok(q)
    }

    fn current(&self) -> Option<Arc<Queue>> {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.as_ref().map(|(_, q)| q.clone())
    }

    fn with_queue<T>(&self, f: impl FnOnce(&Queue) -> CmdResult<T>) -> CmdResult<T> {
        match self.current() {
            Some(q) => f(&q),
            None => Err(CommandError::new(
                crate::error::ErrorKind::NotFound,
                "no job has been started",
            )),
        }
    }
}

/// A local job as the job list shows it (`backend: "local"` beside the queue's fields).
#[derive(Serialize, Clone)]
pub struct LocalJob {
    backend: &'static str,
    #[serde(flatten)]
    info: JobInfo,
}

/// A progress event as the WebView gets it (the preview as a small data URL).
#[derive(Serialize, Clone)]
struct ProgressEvent {
    #[serde(flatten)]
    progress: JobProgress,
    preview: Option<String>,
}

fn emit(app: &AppHandle, event: QueueEvent) {
    let _ = match event {
        QueueEvent::Changed(info) => app.emit(
            events::JOB_CHANGED,
            LocalJob {
                backend: "local",
                info,
            },
        ),
        QueueEvent::Progress(progress) => {
            let preview = progress.preview_png.as_ref().map(|png| {
                format!(
                    "data:image/png;base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(png)
                )
            });
            app.emit(events::JOB_PROGRESS, ProgressEvent { progress, preview })
        }
    };
}

/// What the generate form sends.
#[derive(Deserialize)]
pub struct JobParams {
    project_id: i64,
    model_id: String,
    prompt: String,
    negative_prompt: String,
    styles: Vec<String>,
    steps: usize,
    guidance: f64,
    seed: Option<u64>,
    width: usize,
    height: usize,
    count: usize,
    scheduler: Option<String>,
    /// SDXL's size conditions (advanced parameters); absent = the defaults.
    #[serde(default)]
    size_conditions: SizeConditions,
    /// An image to start from (img2img, inpainting, outpainting).
    #[serde(default)]
    init: Option<crate::inputs::InputParams>,
    /// A second pass at a larger size ("hires fix").
    #[serde(default)]
    hires: Option<HiresFix>,
}

/// A queued job and the seed it will use.
#[derive(Serialize)]
pub struct Submitted {
    id: JobId,
    seed: u64,
}

/// Queues a local generation job; returns its id and seed.
#[tauri::command]
pub async fn submit_job(app: AppHandle, params: JobParams) -> CmdResult<Submitted> {
    blocking(move || {
        // <lora:name:weight> tags name LoRAs of the library; the queue takes them out of the text.
        let (_, tags) = take_lora_tags(&params.prompt);
        let loras = if tags.is_empty() {
            Vec::new()
        } else {
            let library = crate::models::lora_library()?;
            tags.into_iter()
                .map(|tag| Ok((library.resolve(&tag.name)?, tag.weight)))
                .collect::<CmdResult<Vec<_>>>()?
        };
        let (model, spec) = crate::models::installed(&params.model_id, loras)?;
        let styles = app.state::<Styles>().resolve(&app, &params.styles)?;
        let scheduler = params
            .scheduler
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(SchedulerKind::parse)
            .transpose()?;
        let seed = params
            .seed
            .unwrap_or_else(selfdiffusion_recipe::random_seed);
        let library = app.state::<AppState>().library()?;
        let init = params
            .init
            .map(|input| crate::inputs::job_input(&library, input))
            .transpose()?;
        let queue = app.state::<LocalJobs>().queue(&app, library)?;
        let id = queue.submit(JobSpec {
            project_id: params.project_id,
            model: spec,
            model_name: model.id,
            prompt: params.prompt,
            negative_prompt: params.negative_prompt,
            styles,
            steps: params.steps,
            guidance: params.guidance,
            seed,
            width: params.width,
            height: params.height,
            count: params.count,
            scheduler,
            size_conditions: params.size_conditions,
            init,
            hires: params.hires,
        })?;
        Ok(Submitted { id, seed })
    })
    .await
}

/// Cancels a local job, or stops following a cloud one (`backend` = `"cloud"`).
#[tauri::command]
pub fn cancel_job(
    local: State<'_, LocalJobs>,
    cloud: State<'_, Cloud>,
    id: JobId,
    backend: Option<String>,
) -> CmdResult<()> {
    if backend.as_deref() == Some("cloud") {
        return cloud.cancel(id);
    }
    local.with_queue(|q| Ok(q.cancel(id)?))
}

/// Lets the running job finish its current image, then stops it.
#[tauri::command]
pub fn stop_job(local: State<'_, LocalJobs>, id: JobId) -> CmdResult<()> {
    local.with_queue(|q| Ok(q.stop_after_current(id)?))
}

/// A job of either backend, as the job list shows it.
#[derive(Serialize)]
#[serde(untagged)]
pub enum AnyJob {
    /// On this computer.
    Local(LocalJob),
    /// In the cloud.
    Cloud(CloudJobInfo),
}

/// Local and cloud jobs of this run, oldest first within each.
#[tauri::command]
pub fn list_jobs(local: State<'_, LocalJobs>, cloud: State<'_, Cloud>) -> Vec<AnyJob> {
    let local = local.current().map(|q| q.jobs()).unwrap_or_default();
    local
        .into_iter()
        .map(|info| {
            AnyJob::Local(LocalJob {
                backend: "local",
                info,
            })
        })
        .chain(cloud.jobs().into_iter().map(AnyJob::Cloud))
        .collect()
}
