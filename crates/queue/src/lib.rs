//! The generation queue: jobs run first in, first out, one at a time on the engine's device;
//! each job is bound to a project of the library. The engine makes a job's images (prompt
//! encoded once, image k with seed + k) and hands each out as it is done; the queue saves it with
//! its full recipe. Queued jobs can be cancelled, the running one cancelled (within one step,
//! nothing saved for the unfinished image) or stopped after its current image.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use selfdiffusion_engine::{
    Control, Engine, EngineError, ImageInput, ModelSpec, Phase, Request, SchedulerKind,
};
use selfdiffusion_library::{JobGuard, Library, Pixels};
use selfdiffusion_recipe::{take_lora_tags, HiresFix, SizeConditions};
use selfdiffusion_styles::Style;
use serde::Serialize;

/// Identifies a job.
pub type JobId = u64;

/// What a job should make.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The project the images go to.
    pub project_id: i64,
    /// The model (folder or single file, and its LoRAs).
    pub model: ModelSpec,
    /// The model's name for the recipe.
    pub model_name: String,
    /// The user's prompt, before styles (`<lora:…>` tags are taken out before it is sent; the
    /// caller resolves them into `model.loras`).
    pub prompt: String,
    /// The user's negative prompt, before styles.
    pub negative_prompt: String,
    /// Styles to apply, in order.
    pub styles: Vec<Style>,
    /// Denoising steps.
    pub steps: usize,
    /// Guidance scale.
    pub guidance: f64,
    /// Seed of the first image; image k uses seed + k.
    pub seed: u64,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Number of images.
    pub count: usize,
    /// Scheduler (`None`: the model's own).
    pub scheduler: Option<SchedulerKind>,
    /// SDXL's size conditions.
    pub size_conditions: SizeConditions,
    /// An image to start from (img2img), with an optional mask (inpainting, outpainting).
    pub init: Option<ImageInput>,
    /// A second pass at a larger size ("hires fix").
    pub hires: Option<HiresFix>,
}

/// Where a job is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// Waiting its turn.
    Queued,
    /// Being generated.
    Running,
    /// Finished; every image was saved.
    Done,
    /// Stopped after an image on request; the images listed were saved.
    Stopped,
    /// Cancelled; images finished before the cancel were saved.
    Cancelled,
    /// Failed with a readable message.
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// A job as the UI lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobInfo {
    /// The id.
    pub id: JobId,
    /// Its project.
    pub project_id: i64,
    /// The prompt actually sent (styles applied).
    pub prompt: String,
    /// The prompt the user typed.
    pub user_prompt: String,
    /// Images asked for.
    pub count: usize,
    /// Where it is.
    #[serde(flatten)]
    pub state: JobState,
    /// Library ids of the images saved so far.
    pub images: Vec<i64>,
}

/// A progress report for the running job.
#[derive(Debug, Clone, Serialize)]
pub struct JobProgress {
    /// The job.
    pub id: JobId,
    /// What the engine is doing.
    pub phase: Phase,
    /// Image being made (0-based).
    pub image: usize,
    /// Images in the job.
    pub images: usize,
    /// Steps done for this image.
    pub step: usize,
    /// Steps per image.
    pub steps: usize,
    /// Seconds since the job started.
    pub elapsed_s: f64,
    /// Estimated seconds left for the whole job.
    pub eta_s: Option<f64>,
    /// A small PNG preview of the current latents, when the engine made one.
    #[serde(skip)]
    pub preview_png: Option<Vec<u8>>,
}

/// What the queue tells its listener.
#[derive(Debug, Clone)]
pub enum QueueEvent {
    /// A job changed state (or saved an image).
    Changed(JobInfo),
    /// The running job advanced.
    Progress(JobProgress),
}

impl JobInfo {
    /// Whether the job is still waiting or running.
    pub fn is_open(&self) -> bool {
        matches!(self.state, JobState::Queued | JobState::Running)
    }
}

/// Refusals of [`Queue::submit`].
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The parameters are out of range.
    #[error("{0}")]
    Invalid(String),
    /// The project does not exist.
    #[error("{0}")]
    Library(#[from] selfdiffusion_library::Error),
    /// No such job.
    #[error("no job {0}")]
    UnknownJob(JobId),
}

struct Entry {
    info: JobInfo,
    spec: JobSpec,
    request: Request,
    control: Arc<Control>,
    _guard: Option<JobGuard>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<JobId>,
    jobs: Vec<Entry>,
    next_id: JobId,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    engine: Arc<Engine>,
    library: Arc<Library>,
    listener: Box<dyn Fn(QueueEvent) + Send + Sync>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes a job and reports it. The report is made with the state locked, so listeners see
    /// every job's changes in the order they happened, whichever thread made them.
    fn update(&self, id: JobId, change: impl FnOnce(&mut Entry)) {
        let mut state = self.lock();
        let Some(entry) = state.jobs.iter_mut().find(|e| e.info.id == id) else {
            return;
        };
        change(entry);
        (self.listener)(QueueEvent::Changed(entry.info.clone()));
    }
}

/// The queue and its worker thread (stopped when the queue is dropped).
pub struct Queue {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl Queue {
    /// Starts a queue running jobs on `engine`, saving into `library`, reporting to `listener`.
    /// Job changes are reported with the queue's state locked (so in order): the listener must
    /// hand them on, never call the queue.
    pub fn new(
        engine: Arc<Engine>,
        library: Arc<Library>,
        listener: impl Fn(QueueEvent) + Send + Sync + 'static,
    ) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            engine,
            library,
            listener: Box::new(listener),
        });
        let worker_shared = shared.clone();
        let worker = std::thread::Builder::new()
            .name("generation".into())
            .spawn(move || worker(&worker_shared))
            .expect("the generation thread starts");
        Queue {
            shared,
            worker: Some(worker),
        }
    }

    /// Validates a job against its model's limits, applies its styles and queues it. Its
    /// project cannot be deleted until the job ends.
    pub fn submit(&self, spec: JobSpec) -> Result<JobId, QueueError> {
        let style_refs: Vec<&Style> = spec.styles.iter().collect();
        let (untagged, _) = take_lora_tags(&spec.prompt);
        let (prompt, negative) =
            selfdiffusion_styles::apply(&untagged, &spec.negative_prompt, &style_refs);
        if prompt.trim().is_empty() {
            return Err(QueueError::Invalid(
                "the prompt is empty: write one or pick a style that fills it".into(),
            ));
        }
        let request = Request {
            prompt: prompt.clone(),
            negative_prompt: negative,
            steps: spec.steps,
            guidance: spec.guidance,
            seed: spec.seed,
            width: spec.width,
            height: spec.height,
            count: spec.count,
            scheduler: spec.scheduler,
            init_latents: None,
            noise: None,
            init: spec.init.clone(),
            hires: spec.hires,
            preview_every: 5,
            size_conditions: spec.size_conditions,
        };
        let limits = spec
            .model
            .limits()
            .map_err(|e| QueueError::Invalid(e.to_string()))?;
        request
            .validate(&limits)
            .map_err(|e| QueueError::Invalid(e.to_string()))?;
        let guard = self.shared.library.begin_job(spec.project_id)?;
        let info = {
            let mut state = self.shared.lock();
            state.next_id += 1;
            let id = state.next_id;
            let info = JobInfo {
                id,
                project_id: spec.project_id,
                prompt,
                user_prompt: spec.prompt.clone(),
                count: spec.count,
                state: JobState::Queued,
                images: Vec::new(),
            };
            state.jobs.push(Entry {
                info: info.clone(),
                spec,
                request,
                control: Arc::new(Control::default()),
                _guard: Some(guard),
            });
            state.queue.push_back(id);
            // Reported before the worker can take the lock and report it running.
            (self.shared.listener)(QueueEvent::Changed(info.clone()));
            info
        };
        self.shared.wake.notify_all();
        Ok(info.id)
    }

    /// Cancels a queued job (it never runs) or the running one (it stops within one step and
    /// nothing is saved for the unfinished image).
    pub fn cancel(&self, id: JobId) -> Result<(), QueueError> {
        let mut state = self.shared.lock();
        let entry = state
            .jobs
            .iter()
            .find(|e| e.info.id == id)
            .ok_or(QueueError::UnknownJob(id))?;
        match entry.info.state {
            JobState::Queued => {
                state.queue.retain(|q| *q != id);
                drop(state);
                self.shared.update(id, |e| {
                    e.info.state = JobState::Cancelled;
                    e._guard = None;
                });
            }
            JobState::Running => entry.control.cancel(),
            _ => {}
        }
        Ok(())
    }

    /// Lets the running job finish its current image, then stops it.
    pub fn stop_after_current(&self, id: JobId) -> Result<(), QueueError> {
        let state = self.shared.lock();
        let entry = state
            .jobs
            .iter()
            .find(|e| e.info.id == id)
            .ok_or(QueueError::UnknownJob(id))?;
        entry.control.stop_after_current();
        Ok(())
    }

    /// Every job this queue has seen, oldest first.
    pub fn jobs(&self) -> Vec<JobInfo> {
        self.shared
            .lock()
            .jobs
            .iter()
            .map(|e| e.info.clone())
            .collect()
    }

    /// Waits until no job is queued or running (tests and shutdown).
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            let busy = state.jobs.iter().any(|e| e.info.is_open());
            if !busy {
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .wake
                .wait_timeout(state, left.min(Duration::from_millis(50)))
                .map(|r| r.0)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.shutdown = true;
            for e in &state.jobs {
                e.control.cancel();
            }
        }
        self.shared.wake.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn worker(shared: &Shared) {
    loop {
        let (id, spec, request, control) = {
            let mut state = shared.lock();
            loop {
                if state.shutdown {
                    return;
                }
                if let Some(id) = state.queue.pop_front() {
                    let e = state
                        .jobs
                        .iter()
                        .find(|e| e.info.id == id)
                        .expect("queued jobs are listed");
                    break (id, e.spec.clone(), e.request.clone(), e.control.clone());
                }
                state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        shared.update(id, |e| e.info.state = JobState::Running);
        let end = run_job(shared, id, &spec, &request, &control);
        if let JobState::Failed { error } = &end {
            tracing::warn!(job = id, %error, "generation job failed");
        }
        shared.update(id, |e| {
            e.info.state = end;
            e._guard = None;
        });
        shared.wake.notify_all();
    }
}

/// Runs a job on the engine, saving each image into the library as the engine hands it out.
fn run_job(
    shared: &Shared,
    id: JobId,
    spec: &JobSpec,
    request: &Request,
    control: &Control,
) -> JobState {
    let style_names: Vec<String> = spec.styles.iter().map(|s| s.name.clone()).collect();
    let result = shared.engine.generate(
        &spec.model,
        request,
        control,
        &mut |p| {
            (shared.listener)(QueueEvent::Progress(JobProgress {
                id,
                phase: p.phase,
                image: p.image,
                images: p.images,
                step: p.step,
                steps: p.steps,
                elapsed_s: p.elapsed.as_secs_f64(),
                eta_s: p.eta.map(|d| d.as_secs_f64()),
                preview_png: p.preview.as_ref().map(|pr| pr.to_png()),
            }))
        },
        &mut |image| {
            let recipe = request.recipe(&image, &spec.model_name, "local").styled(
                style_names.clone(),
                &spec.prompt,
                &spec.negative_prompt,
            );
            let pixels = Pixels {
                width: image.width as u32,
                height: image.height as u32,
                rgb: &image.rgb,
            };
            let name = format!("{}.png", image.seed);
            let detail = shared
                .library
                .add_generated(spec.project_id, pixels, &recipe, Some(&name))
                .map_err(|e| format!("the image could not be saved: {e}"))?;
            shared.update(id, |e| e.info.images.push(detail.summary.id));
            Ok(())
        },
    );
    match result {
        Ok(g) if g.stopped_early => JobState::Stopped,
        Ok(_) => JobState::Done,
        Err(EngineError::Cancelled) => JobState::Cancelled,
        Err(e) => JobState::Failed {
            error: e.to_string(),
        },
    }
}
