//! The job queue: jobs wait first in, first out; N worker threads share one engine (and one
//! loaded model) and write each job's images into its own folder. A job belongs to the user who
//! submitted it; finished jobs and their images are removed after the retention time. Every job
//! is written down in the [`JobStore`] as it changes, so a restart (or a crash) loses nothing:
//! at start the jobs that had not finished are checked again and queued in their order.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use selfdiffusion_engine::Control;
use selfdiffusion_files::{write_atomic, Access};
pub use selfdiffusion_protocol::Status;

use crate::auth::Caller;
use crate::metrics::Metrics;
use crate::store::{JobStore, StoreError, StoredJob, StoredRequest};
pub use crate::work::Work;
use crate::work::{image_path, Runner};

/// A job as its owner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    /// Where it is.
    pub status: Status,
    /// 0..1 while running.
    pub progress: Option<f64>,
    /// Denoising steps done and to do, over all its images, while running.
    pub steps: Option<(usize, usize)>,
    /// The engine's estimate of the time left, while running.
    pub eta: Option<Duration>,
    /// How many images are ready (named `0.png` …).
    pub images: usize,
    /// Why it failed.
    pub error: Option<String>,
}

impl JobView {
    /// A job in `status` with `images` written (no progress yet).
    fn new(status: Status, images: usize, error: Option<String>) -> Self {
        JobView {
            status,
            progress: None,
            steps: None,
            eta: None,
            images,
            error,
        }
    }
}

/// Refusals of [`Jobs::cancel`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CancelError {
    /// The caller has no such job.
    #[error("no such job")]
    NotFound,
    /// It already ended.
    #[error("the job already ended ({0:?})")]
    Ended(Status),
}

/// Refusals of [`Jobs::submit`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// The user already has the most jobs allowed waiting or running.
    #[error("you already have {0} jobs queued or running; wait for one to finish")]
    TooMany(usize),
    /// The server is stopping.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The job could not be written down.
    #[error("the server cannot record the job now; try again ({0})")]
    Store(String),
}

struct Job {
    owner: String,
    username: String,
    view: JobView,
    /// Its owner cancelled it while it ran: the worker's stop ends it as cancelled.
    cancelled: bool,
    control: Arc<Control>,
    finished_at: Option<Instant>,
}

#[derive(Default)]
struct State {
    jobs: HashMap<String, Job>,
    /// Waiting jobs in order, with when each was queued.
    queue: VecDeque<(String, Work, Instant)>,
    shutdown: bool,
}

/// Checks a stored request again as a job to run (or says why it no longer passes).
pub type Resume = Box<dyn Fn(&StoredRequest) -> Result<Work, String> + Send + Sync>;

/// What the workers need.
pub struct JobsConfig {
    /// The engine and the model it serves.
    pub runner: Runner,
    /// Where job folders go.
    pub images_dir: PathBuf,
    /// Worker threads.
    pub workers: usize,
    /// Most jobs queued or running per user.
    pub max_jobs_per_user: usize,
    /// How long finished jobs are kept.
    pub retention: Duration,
    /// Where jobs are written down.
    pub store: Arc<JobStore>,
    /// Checks a stored request again when a restart resumes its job.
    pub resume: Resume,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    config: JobsConfig,
    metrics: Metrics,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Job)) {
        if let Some(job) = self.lock().jobs.get_mut(id) {
            change(job);
        }
    }

    /// Writes down where job `id` is now (a failure is logged: the job goes on in memory).
    fn record(&self, id: &str, view: &JobView) {
        if let Err(e) =
            self.config
                .store
                .update(id, view.status, view.images, view.error.as_deref())
        {
            tracing::error!(job = %id, error = %e, "cannot record the job's state");
        }
    }
}

/// The queue and its workers (stopped, running jobs cancelled, when dropped).
pub struct Jobs {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Jobs {
    /// Reads the jobs the store kept (queueing again, checked anew, those that had not
    /// finished) and starts `config.workers` workers.
    pub fn start(config: JobsConfig) -> Result<Self, StoreError> {
        let state = restore(&config)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            wake: Condvar::new(),
            config,
            metrics: Metrics::default(),
        });
        let workers = (0..shared.config.workers)
            .map(|n| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("worker-{n}"))
                    .spawn(move || worker(&shared))
                    .expect("a worker thread starts")
            })
            .collect();
        Ok(Jobs { shared, workers })
    }

    /// Queues `request` (a [`JobRequest`] or an [`UpscaleJob`]) for `caller`, written down as
    /// `stored` first; returns the job id. With an `idempotency_key` the caller used before,
    /// nothing is queued and the job made then is returned.
    pub fn submit(
        &self,
        caller: &Caller,
        request: impl Into<Work>,
        stored: StoredRequest,
        idempotency_key: Option<&str>,
    ) -> Result<String, SubmitError> {
        let request = request.into();
        let id = uuid::Uuid::new_v4().to_string();
        let store_error = |e: StoreError| {
            tracing::error!(error = %e, "cannot record a job");
            SubmitError::Store(e.to_string())
        };
        let expired = {
            let mut state = self.shared.lock();
            if state.shutdown {
                return Err(SubmitError::ShuttingDown);
            }
            // Under the lock: a retry racing the first request finds its row.
            if let Some(key) = idempotency_key {
                let store = &self.shared.config.store;
                if let Some(existing) = store.job_for_key(&caller.sub, key).map_err(store_error)? {
                    return Ok(existing);
                }
            }
            let expired = self.forget_expired(&mut state);
            let limit = self.shared.config.max_jobs_per_user;
            let open = state
                .jobs
                .values()
                .filter(|j| j.owner == caller.sub && j.finished_at.is_none())
                .count();
            if open >= limit {
                return Err(SubmitError::TooMany(limit));
            }
            let view = JobView::new(Status::Queued, 0, None);
            self.shared
                .config
                .store
                .insert(&StoredJob {
                    id: id.clone(),
                    owner: caller.sub.clone(),
                    username: caller.username.clone(),
                    request: stored,
                    status: view.status,
                    images: 0,
                    error: None,
                    finished_at: None,
                    idempotency_key: idempotency_key.map(str::to_owned),
                })
                .map_err(store_error)?;
            state.jobs.insert(
                id.clone(),
                Job {
                    owner: caller.sub.clone(),
                    username: caller.username.clone(),
                    view,
                    cancelled: false,
                    control: Arc::new(Control::default()),
                    finished_at: None,
                },
            );
            state.queue.push_back((id.clone(), request, Instant::now()));
            expired
        };
        remove_job_folders(&self.shared.config.images_dir, &expired);
        tracing::info!(job = %id, user = %caller.username, "job queued");
        self.shared.wake.notify_one();
        Ok(id)
    }

    /// Cancels `owner`'s job `id`: a queued job leaves the queue now; a running one stops after
    /// its current step (the images it made stay). Returns the job as it is now.
    pub fn cancel(&self, owner: &str, id: &str) -> Result<JobView, CancelError> {
        let mut state = self.shared.lock();
        let waiting = state.queue.iter().position(|(queued, _, _)| queued == id);
        let job = state
            .jobs
            .get_mut(id)
            .filter(|j| j.owner == owner)
            .ok_or(CancelError::NotFound)?;
        match job.view.status {
            Status::Queued => {
                job.view.status = Status::Cancelled;
                job.finished_at = Some(Instant::now());
                let view = job.view.clone();
                if let Some(at) = waiting {
                    state.queue.remove(at);
                }
                drop(state);
                self.shared.record(id, &view);
                self.shared.metrics.finished(Status::Cancelled, 0.0);
                Ok(view)
            }
            Status::Running => {
                job.cancelled = true;
                job.control.cancel();
                Ok(job.view.clone())
            }
            ended => Err(CancelError::Ended(ended)),
        }
    }

    /// The job `id` if it belongs to `owner` (another user's job looks just like a missing one).
    pub fn view(&self, owner: &str, id: &str) -> Option<JobView> {
        let state = self.shared.lock();
        state
            .jobs
            .get(id)
            .filter(|j| j.owner == owner)
            .map(|j| j.view.clone())
    }

    /// Whether image `index` of job `id` is ready and (when `owner` is given) the job is theirs.
    pub fn has_image(&self, owner: Option<&str>, id: &str, index: usize) -> bool {
        let state = self.shared.lock();
        state
            .jobs
            .get(id)
            .is_some_and(|job| owner.is_none_or(|o| o == job.owner) && index < job.view.images)
    }

    /// `GET /metrics`: the Prometheus text exposition, with the jobs held now by state.
    pub fn metrics_text(&self) -> String {
        let counts = {
            let state = self.shared.lock();
            Status::ALL.map(|status| {
                let held = state
                    .jobs
                    .values()
                    .filter(|j| j.view.status == status)
                    .count();
                (status, held)
            })
        };
        self.shared.metrics.render(&counts)
    }

    /// Jobs waiting and running.
    pub fn load(&self) -> (usize, usize) {
        let state = self.shared.lock();
        let running = state
            .jobs
            .values()
            .filter(|j| j.view.status == Status::Running)
            .count();
        (state.queue.len(), running)
    }

    /// Forgets jobs finished longer ago than the retention time; returns their ids, whose
    /// folders the caller removes once the lock is released.
    fn forget_expired(&self, state: &mut State) -> Vec<String> {
        let retention = self.shared.config.retention;
        let old: Vec<String> = state
            .jobs
            .iter()
            .filter(|(_, j)| j.finished_at.is_some_and(|t| t.elapsed() > retention))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &old {
            state.jobs.remove(id);
        }
        if let Err(e) = self.shared.config.store.remove(&old) {
            tracing::error!(error = %e, "cannot forget old jobs");
        }
        old
    }
}

/// The jobs of `config`'s store as the queue holds them: finished ones as they were (their
/// retention counted from when they finished), the others checked again and queued in their
/// order, or failed with the reason they no longer pass; their partial images are removed.
fn restore(config: &JobsConfig) -> Result<State, StoreError> {
    let mut state = State::default();
    for stored in config.store.all()? {
        let mut view = JobView::new(stored.status, stored.images, stored.error.clone());
        let finished_at = match stored.status {
            Status::Succeeded | Status::Failed | Status::Cancelled => {
                let age = stored
                    .finished_at
                    .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
                    .unwrap_or_default();
                Some(Instant::now().checked_sub(age).unwrap_or_else(Instant::now))
            }
            Status::Queued | Status::Running => {
                remove_job_folders(&config.images_dir, std::slice::from_ref(&stored.id));
                view.images = 0;
                match (config.resume)(&stored.request) {
                    Ok(work) => {
                        view.status = Status::Queued;
                        state
                            .queue
                            .push_back((stored.id.clone(), work, Instant::now()));
                        None
                    }
                    Err(reason) => {
                        view.status = Status::Failed;
                        view.error = Some(format!(
                            "the job could not be resumed after a restart: {reason}"
                        ));
                        Some(Instant::now())
                    }
                }
            }
        };
        if view.status != stored.status || view.images != stored.images {
            config
                .store
                .update(&stored.id, view.status, view.images, view.error.as_deref())?;
        }
        state.jobs.insert(
            stored.id,
            Job {
                owner: stored.owner,
                username: stored.username,
                view,
                cancelled: false,
                control: Arc::new(Control::default()),
                finished_at,
            },
        );
    }
    if !state.queue.is_empty() {
        tracing::info!(
            jobs = state.queue.len(),
            "resuming the jobs a restart interrupted"
        );
    }
    Ok(state)
}

/// Removes the image folders of forgotten jobs.
fn remove_job_folders(images_dir: &Path, ids: &[String]) {
    for id in ids {
        let dir = images_dir.join(id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove an old job's images");
            }
        }
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.shutdown = true;
            for job in state.jobs.values() {
                job.control.cancel();
            }
        }
        self.shared.wake.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Counts a worker as alive until dropped (whatever way the worker ends).
struct Alive<'a>(&'a Metrics);

impl<'a> Alive<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.worker(true);
        Alive(metrics)
    }
}

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        self.0.worker(false);
    }
}

fn worker(shared: &Shared) {
    let _alive = Alive::new(&shared.metrics);
    loop {
        let (id, request, control, username) = {
            let mut state = shared.lock();
            loop {
                if state.shutdown {
                    return;
                }
                if let Some((id, request, queued_at)) = state.queue.pop_front() {
                    shared.metrics.started(queued_at.elapsed().as_secs_f64());
                    let job = state.jobs.get_mut(&id).expect("queued jobs exist");
                    job.view.status = Status::Running;
                    job.view.progress = Some(0.0);
                    break (id, request, job.control.clone(), job.username.clone());
                }
                state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        shared.record(&id, &JobView::new(Status::Running, 0, None));
        tracing::info!(job = %id, user = %username, "job started");
        let started = Instant::now();
        let outcome = run(shared, &id, &request, &control);
        let mut state = shared.lock();
        if outcome.is_err() && state.shutdown {
            // Stopped by the shutdown: left as running in the store, resumed at the next start.
            return;
        }
        if let Some(job) = state.jobs.get_mut(&id) {
            match outcome {
                Ok(images) => {
                    job.view.status = Status::Succeeded;
                    job.view.progress = Some(1.0);
                    job.view.images = images;
                }
                Err(_) if job.cancelled => {
                    tracing::info!(job = %id, "job cancelled by its owner");
                    job.view.status = Status::Cancelled;
                    job.view.progress = None;
                }
                Err(error) => {
                    tracing::warn!(job = %id, %error, "job failed");
                    job.view.status = Status::Failed;
                    job.view.progress = None;
                    job.view.error = Some(error);
                }
            }
            job.finished_at = Some(Instant::now());
            let view = job.view.clone();
            drop(state);
            shared.record(&id, &view);
            shared
                .metrics
                .finished(view.status, started.elapsed().as_secs_f64());
        }
        tracing::info!(job = %id, "job finished");
    }
}

/// Runs job `id`, its progress shown to its owner and each image written to its folder (and
/// counted in the store) as it comes; returns how many were written.
fn run(shared: &Shared, id: &str, work: &Work, control: &Control) -> Result<usize, String> {
    let images_dir = &shared.config.images_dir;
    shared.config.runner.run(
        id,
        work,
        control,
        &mut |steps| {
            shared.update(id, |j| {
                j.view.progress = Some(steps.fraction());
                j.view.steps = Some((steps.done, steps.total));
                j.view.eta = steps.eta;
            })
        },
        &mut |index, png| {
            write_atomic(&image_path(images_dir, id, index), &png, Access::Default).map_err(
                |e| {
                    tracing::error!(job = %id, error = %e, "cannot write an image");
                    "the server could not store the image".to_owned()
                },
            )?;
            let mut view = None;
            shared.update(id, |j| {
                j.view.images = index + 1;
                view = Some(j.view.clone());
            });
            if let Some(view) = view {
                shared.record(id, &view);
            }
            Ok(())
        },
    )
}
