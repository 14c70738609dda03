//! The generation queue: jobs run first in, first out, one at a time on the engine's device;
//! each job is bound to a project of the library, where every finished image is saved with its
//! full recipe as soon as it is done. Queued jobs can be cancelled, the running one cancelled
//! (within one step, nothing saved for the unfinished image) or stopped after its current image.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use selfdiffusion_engine::{Control, Engine, EngineError, Phase, Request, SchedulerKind};
use selfdiffusion_library::{rgb_png_with_recipe, JobGuard, Library, Recipe};
use selfdiffusion_styles::Style;
use serde::Serialize;

/// Identifies a job.
pub type JobId = u64;

/// What a job should make.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The project the images go to.
    pub project_id: i64,
    /// The model folder.
    pub model: PathBuf,
    /// The model's name for the recipe.
    pub model_name: String,
    /// The user's prompt, before styles.
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
    negative: String,
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

    fn update(&self, id: JobId, change: impl FnOnce(&mut Entry)) {
        let info = {
            let mut state = self.lock();
            let Some(entry) = state.jobs.iter_mut().find(|e| e.info.id == id) else {
                return;
            };
            change(entry);
            entry.info.clone()
        };
        (self.listener)(QueueEvent::Changed(info));
    }
}

/// The queue and its worker thread (stopped when the queue is dropped).
pub struct Queue {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl Queue {
    /// Starts a queue running jobs on `engine`, saving into `library`, reporting to `listener`.
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

    /// Validates a job, applies its styles and queues it. Its project cannot be deleted until
    /// the job ends.
    pub fn submit(&self, spec: JobSpec) -> Result<JobId, QueueError> {
        let style_refs: Vec<&Style> = spec.styles.iter().collect();
        let (prompt, negative) =
            selfdiffusion_styles::apply(&spec.prompt, &spec.negative_prompt, &style_refs);
        if prompt.trim().is_empty() {
            return Err(QueueError::Invalid(
                "the prompt is empty: write one or pick a style that fills it".into(),
            ));
        }
        let request = Request {
            prompt: prompt.clone(),
            negative_prompt: negative.clone(),
            steps: spec.steps,
            guidance: spec.guidance,
            seed: spec.seed,
            width: spec.width,
            height: spec.height,
            count: 1,
            scheduler: spec.scheduler,
            init_latents: None,
            preview_every: 5,
        };
        request
            .validate(8)
            .map_err(|e| QueueError::Invalid(e.to_string()))?;
        if spec.count == 0 || spec.count > selfdiffusion_engine::MAX_COUNT {
            return Err(QueueError::Invalid(format!(
                "count must be between 1 and {} (got {})",
                selfdiffusion_engine::MAX_COUNT,
                spec.count
            )));
        }
        let guard = self.shared.library.begin_job(spec.project_id)?;
        let info = {
            let mut state = self.shared.lock();
            state.next_id += 1;
            let id = state.next_id;
            let info = JobInfo {
                id,
                project_id: spec.project_id,
                prompt,
                count: spec.count,
                state: JobState::Queued,
                images: Vec::new(),
            };
            state.jobs.push(Entry {
                info: info.clone(),
                spec,
                request,
                negative,
                control: Arc::new(Control::default()),
                _guard: Some(guard),
            });
            state.queue.push_back(id);
            info
        };
        self.shared.wake.notify_all();
        let id = info.id;
        (self.shared.listener)(QueueEvent::Changed(info));
        Ok(id)
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
            let busy = state
                .jobs
                .iter()
                .any(|e| matches!(e.info.state, JobState::Queued | JobState::Running));
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
        let (id, spec, request, negative, control) = {
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
                    break (
                        id,
                        e.spec.clone(),
                        e.request.clone(),
                        e.negative.clone(),
                        e.control.clone(),
                    );
                }
                state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        shared.update(id, |e| e.info.state = JobState::Running);
        let end = run_job(shared, id, &spec, &request, &negative, &control);
        shared.update(id, |e| {
            e.info.state = end;
            e._guard = None;
        });
        shared.wake.notify_all();
    }
}

/// Runs a job image by image (image k with seed + k, so each is saved as soon as it is done).
fn run_job(
    shared: &Shared,
    id: JobId,
    spec: &JobSpec,
    request: &Request,
    negative: &str,
    control: &Control,
) -> JobState {
    let started = Instant::now();
    let mut denoise_time = Duration::ZERO;
    let mut steps_done = 0usize;
    let total_steps = spec.steps * spec.count;
    for k in 0..spec.count {
        if k > 0 && control.stopping() {
            return JobState::Stopped;
        }
        let seed = spec.seed.wrapping_add(k as u64);
        let image_request = Request {
            seed,
            ..request.clone()
        };
        let mut last_step = Instant::now();
        let result = shared
            .engine
            .generate(&spec.model, &image_request, control, &mut |p| {
                if p.phase == Phase::Denoising && p.step > 0 {
                    denoise_time += last_step.elapsed();
                    steps_done += 1;
                }
                last_step = Instant::now();
                let eta = (steps_done > 0).then(|| {
                    (denoise_time / steps_done as u32 * (total_steps - steps_done) as u32)
                        .as_secs_f64()
                });
                (shared.listener)(QueueEvent::Progress(JobProgress {
                    id,
                    phase: p.phase,
                    image: k,
                    images: spec.count,
                    step: p.step,
                    steps: spec.steps,
                    elapsed_s: started.elapsed().as_secs_f64(),
                    eta_s: eta,
                    preview_png: p.preview.as_ref().map(|pr| pr.to_png()),
                }));
            });
        let generation = match result {
            Ok(g) => g,
            Err(EngineError::Cancelled) => return JobState::Cancelled,
            Err(e) => {
                return JobState::Failed {
                    error: e.to_string(),
                }
            }
        };
        let Some(image) = generation.images.into_iter().next() else {
            return JobState::Failed {
                error: "the engine returned no image".into(),
            };
        };
        let mut recipe = Recipe {
            prompt: request.prompt.clone(),
            negative_prompt: negative.to_owned(),
            styles: spec.styles.iter().map(|s| s.name.clone()).collect(),
            model: Some(spec.model_name.clone()),
            scheduler: Some(generation.scheduler.name().to_owned()),
            steps: Some(spec.steps as u32),
            guidance: Some(spec.guidance),
            seed: Some(seed),
            width: Some(image.width as u32),
            height: Some(image.height as u32),
            backend: Some("local".into()),
            ..Recipe::default()
        };
        recipe.set_user_prompts(&spec.prompt, &spec.negative_prompt);
        let saved =
            rgb_png_with_recipe(image.width as u32, image.height as u32, &image.rgb, &recipe)
                .and_then(|png| {
                    shared.library.add_image(
                        spec.project_id,
                        &png,
                        &recipe,
                        Some(&format!("{seed}.png")),
                    )
                });
        match saved {
            Ok(detail) => shared.update(id, |e| e.info.images.push(detail.summary.id)),
            Err(e) => {
                return JobState::Failed {
                    error: format!("the image could not be saved: {e}"),
                }
            }
        }
    }
    JobState::Done
}
