//! Generation in the app: styles, installed models, and the job queue of the core, adapted to
//! commands (`submit_job`, `cancel_job`, …) and events (`job-changed`, `job-progress`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use selfdiffusion_engine::{default_dtype, DeviceChoice, Engine, SchedulerKind};
use selfdiffusion_library::Library;
use selfdiffusion_models::{Catalog, Defaults, Downloader, HubCache, LocalModels};
use selfdiffusion_queue::{JobId, JobInfo, JobSpec, Queue, QueueEvent};
use selfdiffusion_styles::{Style, StyleProblem};
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Emitter, Manager, State};

use crate::cancel::CancelSlot;
use crate::cloud::{Cloud, CloudJobInfo};
use crate::state::AppState;

/// The queue and the engine it runs on, made on first use for the open library, and the
/// cancel flag of a model download.
#[derive(Default)]
pub struct Generation {
    queue: Mutex<Option<(PathBuf, Arc<Queue>)>>,
    engine: Mutex<Option<Arc<Engine>>>,
    download_cancel: CancelSlot,
}

impl Generation {
    fn engine(&self) -> Result<Arc<Engine>, String> {
        let mut engine = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = engine.as_ref() {
            return Ok(e.clone());
        }
        let device = DeviceChoice::Auto.open().map_err(|e| e.to_string())?;
        let made = Arc::new(Engine::new(device.clone(), default_dtype(&device)));
        *engine = Some(made.clone());
        Ok(made)
    }

    /// The queue for `library`, started (or restarted after a library switch) as needed.
    fn queue(&self, app: &AppHandle, library: Arc<Library>) -> Result<Arc<Queue>, String> {
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
}

/// A progress event as the WebView gets it (the preview as a small data URL).
#[derive(Serialize, Clone)]
struct ProgressEvent {
    #[serde(flatten)]
    progress: selfdiffusion_queue::JobProgress,
    preview: Option<String>,
}

fn emit(app: &AppHandle, event: QueueEvent) {
    let _ = match event {
        QueueEvent::Changed(info) => app.emit("job-changed", info),
        QueueEvent::Progress(progress) => {
            let preview = progress.preview_png.as_ref().map(|png| {
                format!(
                    "data:image/png;base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(png)
                )
            });
            app.emit("job-progress", ProgressEvent { progress, preview })
        }
    };
}

/// Built-in and user styles, with the user entries that were skipped.
#[derive(Serialize)]
pub struct StyleList {
    styles: Vec<Style>,
    problems: Vec<StyleProblem>,
}

fn user_styles_file(app: &AppHandle) -> Option<PathBuf> {
    app.path()
        .app_config_dir()
        .ok()
        .map(|d| d.join("styles.json"))
}

fn all_styles(app: &AppHandle) -> StyleList {
    let mut styles = selfdiffusion_styles::builtin();
    let mut problems = Vec::new();
    if let Some(file) = user_styles_file(app) {
        match selfdiffusion_styles::load_user_styles(&file) {
            Ok(user) => {
                styles.extend(user.styles);
                problems = user.problems;
            }
            Err(e) => problems.push(StyleProblem {
                name: file.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }
    StyleList { styles, problems }
}

/// Built-in and user styles, with the user entries that were skipped.
#[tauri::command]
pub fn list_styles(app: AppHandle) -> StyleList {
    all_styles(&app)
}

/// The prompt and negative prompt that would be sent with these styles.
#[tauri::command]
pub fn preview_prompt(
    app: AppHandle,
    prompt: String,
    negative: String,
    styles: Vec<String>,
) -> (String, String) {
    let all = all_styles(&app).styles;
    let chosen: Vec<&Style> = styles
        .iter()
        .filter_map(|n| all.iter().find(|s| &s.name == n))
        .collect();
    selfdiffusion_styles::apply(&prompt, &negative, &chosen)
}

/// A model the user can pick.
#[derive(Serialize)]
pub struct ModelEntry {
    id: String,
    name: String,
    installed: bool,
    approx_bytes: Option<u64>,
    defaults: Defaults,
    #[serde(skip)]
    path: Option<PathBuf>,
}

fn models() -> Vec<ModelEntry> {
    let cache = HubCache::from_env();
    let catalog = Catalog::builtin();
    let mut out: Vec<ModelEntry> = catalog
        .models
        .iter()
        .map(|m| {
            let path = cache.complete_snapshot(m);
            ModelEntry {
                id: m.id.clone(),
                name: m.name.clone(),
                installed: path.is_some(),
                approx_bytes: Some(m.approx_bytes),
                defaults: m.defaults.clone(),
                path,
            }
        })
        .collect();
    let local = LocalModels::default_location()
        .and_then(|r| r.list().ok())
        .unwrap_or_default();
    out.extend(local.into_iter().map(|m| ModelEntry {
        id: m.id,
        name: m.name,
        installed: true,
        approx_bytes: None,
        defaults: catalog.default_model().defaults.clone(),
        path: Some(m.path),
    }));
    out
}

/// Catalog models (installed or not) and imported folders.
#[tauri::command]
pub fn list_models() -> Vec<ModelEntry> {
    models()
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
}

/// A queued job and the seed it will use.
#[derive(Serialize)]
pub struct Submitted {
    id: JobId,
    seed: u64,
}

/// A seed for a job that asked for a random one (53 bits, exact in JavaScript).
pub fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (nanos as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % (1 << 53)
}

/// Queues a local generation job; returns its id and seed.
#[tauri::command]
pub fn submit_job(
    app: AppHandle,
    state: State<'_, AppState>,
    gen: State<'_, Generation>,
    params: JobParams,
) -> Result<Submitted, String> {
    let model = models()
        .into_iter()
        .find(|m| m.id == params.model_id)
        .ok_or_else(|| format!("unknown model {}", params.model_id))?;
    let path = model
        .path
        .ok_or_else(|| format!("{} is not installed yet; download it first", model.name))?;
    let all = all_styles(&app).styles;
    let styles = params
        .styles
        .iter()
        .map(|n| {
            all.iter()
                .find(|s| &s.name == n)
                .cloned()
                .ok_or_else(|| format!("unknown style {n}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let scheduler = params
        .scheduler
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(SchedulerKind::parse)
        .transpose()
        .map_err(|e| e.to_string())?;
    let seed = params.seed.unwrap_or_else(random_seed);
    let queue = gen.queue(&app, state.library()?)?;
    let id = queue
        .submit(JobSpec {
            project_id: params.project_id,
            model: path,
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
        })
        .map_err(|e| e.to_string())?;
    Ok(Submitted { id, seed })
}

fn with_queue<T>(
    gen: &Generation,
    f: impl FnOnce(&Queue) -> Result<T, String>,
) -> Result<T, String> {
    let queue = gen.queue.lock().unwrap_or_else(|e| e.into_inner());
    match queue.as_ref() {
        Some((_, q)) => f(q),
        None => Err("no job has been started".into()),
    }
}

/// Cancels a local job, or stops following a cloud one (`backend` = `"cloud"`).
#[tauri::command]
pub fn cancel_job(
    gen: State<'_, Generation>,
    cloud: State<'_, Cloud>,
    id: JobId,
    backend: Option<String>,
) -> Result<(), String> {
    if backend.as_deref() == Some("cloud") {
        return cloud.cancel(id);
    }
    with_queue(&gen, |q| q.cancel(id).map_err(|e| e.to_string()))
}

/// Lets the running job finish its current image, then stops it.
#[tauri::command]
pub fn stop_job(gen: State<'_, Generation>, id: JobId) -> Result<(), String> {
    with_queue(&gen, |q| {
        q.stop_after_current(id).map_err(|e| e.to_string())
    })
}

/// A job of either backend, as the job list shows it.
#[derive(Serialize)]
#[serde(untagged)]
pub enum AnyJob {
    /// On this computer.
    Local(JobInfo),
    /// In the cloud.
    Cloud(CloudJobInfo),
}

/// Local and cloud jobs of this run.
#[tauri::command]
pub fn list_jobs(gen: State<'_, Generation>, cloud: State<'_, Cloud>) -> Vec<AnyJob> {
    let local = with_queue(&gen, |q| Ok(q.jobs())).unwrap_or_default();
    local
        .into_iter()
        .map(AnyJob::Local)
        .chain(cloud.jobs().into_iter().map(AnyJob::Cloud))
        .collect()
}

/// Downloads a catalog model into the Hugging Face cache (checking free disk first, resuming an
/// interrupted download), emitting `model-download-progress`. Returns the model list afterwards.
#[tauri::command]
pub async fn download_model(
    app: AppHandle,
    gen: State<'_, Generation>,
    id: String,
) -> Result<Vec<ModelEntry>, String> {
    let model = Catalog::builtin()
        .get(&id)
        .map_err(|e| e.to_string())?
        .clone();
    let cancel = gen.download_cancel.begin();
    let result = tauri::async_runtime::spawn_blocking(move || {
        Downloader::from_env().download(&model, &cancel, &mut |p| {
            let _ = app.emit("model-download-progress", p);
        })
    })
    .await
    .map_err(|e| format!("the download stopped unexpectedly: {e}"))?;
    gen.download_cancel.end();
    result.map_err(|e| e.to_string())?;
    Ok(models())
}

/// Cancels the model download in progress; it resumes where it stopped next time.
#[tauri::command]
pub fn cancel_model_download(gen: State<'_, Generation>) {
    gen.download_cancel.cancel();
}
