//! A scale-out worker: claims jobs from the shared table, runs them on the local engine, puts
//! each image in the bucket as it is made, and holds its lease with heartbeats that also carry
//! the progress (and bring back a cancel). Whatever happens to the worker, a job ends exactly
//! once: only the holder of the current attempt can finish it, and a job whose worker died is
//! claimed again when its lease runs out (its images are overwritten under the same keys).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use selfdiffusion_engine::Control;
use selfdiffusion_protocol::Status;
use tokio::sync::{watch, Notify};

use crate::cluster::db::{Beat, Claimed, Db, Outcome};
use crate::cluster::objects::Objects;
use crate::metrics::Metrics;
use crate::request::Checks;
use crate::work::{Runner, Steps};

/// How long an idle worker waits before it looks for a job again when no notice woke it (a
/// lease that ran out, a retry's back-off that ended, a notice lost while the listener
/// reconnected).
const IDLE: Duration = Duration::from_secs(1);
/// The longest wait after the database failed.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a worker process runs on.
pub struct Worker {
    /// Its name in the job table (unique per process).
    pub name: String,
    /// The job table.
    pub db: Db,
    /// The bucket.
    pub objects: Arc<Objects>,
    /// The engine and model.
    pub runner: Arc<Runner>,
    /// The checks a stored request passes again before it runs.
    pub checks: Arc<Checks>,
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// Starts allowed per job.
    pub max_attempts: u32,
    /// This worker's metrics (queue wait, run time, outcomes).
    pub metrics: Arc<Metrics>,
    /// Woken when a job is made ready to run ([`Db::wake_on_new_jobs`]).
    pub wake: Arc<Notify>,
}

impl Worker {
    /// Heartbeats (and progress writes) come this often: a few per lease, at least once a
    /// second so streams move.
    fn beat(&self) -> Duration {
        (self.lease / 3).min(Duration::from_secs(1))
    }

    /// Runs `slots` jobs at a time until `stop` turns true; a job running then goes back to
    /// the queue for another worker.
    pub async fn run(self: Arc<Self>, slots: usize, stop: watch::Receiver<bool>) {
        let seen = {
            let worker = self.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = worker.db.worker_seen(&worker.name).await {
                        tracing::warn!(error = %e, "cannot record this worker as alive");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(worker.beat()) => {}
                        _ = stop.changed() => return,
                    }
                }
            })
        };
        let slots: Vec<_> = (0..slots)
            .map(|_| tokio::spawn(self.clone().slot(stop.clone())))
            .collect();
        for slot in slots {
            let _ = slot.await;
        }
        let _ = seen.await;
        if let Err(e) = self.db.worker_gone(&self.name).await {
            tracing::warn!(error = %e, "cannot record this worker as gone");
        }
    }

    /// One job at a time, until `stop`.
    async fn slot(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        self.metrics.worker(true);
        let mut backoff = IDLE;
        while !*stop.borrow() {
            // Registered before the look at the table, so a job announced meanwhile wakes it.
            let announced = self.wake.notified();
            tokio::pin!(announced);
            announced.as_mut().enable();
            let wait = match self
                .db
                .claim(&self.name, self.lease, self.max_attempts)
                .await
            {
                Ok(Some(job)) => {
                    backoff = IDLE;
                    self.attempt(job, &stop).await;
                    continue;
                }
                Ok(None) => IDLE,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim a job; trying again");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    backoff
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = &mut announced => {}
                _ = stop.changed() => {}
            }
        }
        self.metrics.worker(false);
    }

    /// Runs one claimed attempt to its end.
    async fn attempt(self: &Arc<Self>, job: Claimed, stop: &watch::Receiver<bool>) {
        let Claimed {
            id,
            owner,
            username,
            request,
            attempt,
            waited,
        } = job;
        tracing::info!(job = %id, user = %username, attempt, "job started");
        self.metrics.started(waited.as_secs_f64());
        let started = Instant::now();
        let work = request.and_then(|r| self.checks.resume(&r));
        let outcome = match work {
            Err(reason) => Outcome::Failed(reason),
            Ok(work) => {
                let state = Arc::new(Attempt::default());
                let beats = tokio::spawn(self.clone().heartbeats(
                    id.clone(),
                    attempt,
                    state.clone(),
                    stop.clone(),
                ));
                let result = {
                    let (worker, state, id, owner) =
                        (self.clone(), state.clone(), id.clone(), owner.clone());
                    let runtime = tokio::runtime::Handle::current();
                    tokio::task::spawn_blocking(move || {
                        worker.generate(&runtime, &id, &owner, attempt, &work, &state)
                    })
                    .await
                    .unwrap_or_else(|e| Err(format!("the worker failed: {e}")))
                };
                beats.abort();
                if state.lost.load(Ordering::Relaxed) {
                    tracing::warn!(job = %id, attempt, "lease lost: another worker has the job");
                    return;
                }
                if result.is_err() && state.stopping.load(Ordering::Relaxed) {
                    tracing::info!(job = %id, "stopping: the job goes back to the queue");
                    if let Err(e) = self.db.release(&self.name, &id, attempt).await {
                        tracing::warn!(job = %id, error = %e, "cannot release the job: it is taken again when its lease ends");
                    }
                    return;
                }
                match result {
                    Ok(images) => Outcome::Succeeded(images),
                    Err(_) if state.cancelled.load(Ordering::Relaxed) => {
                        Outcome::Cancelled(state.images.load(Ordering::Relaxed))
                    }
                    Err(e) if state.storage_failed.load(Ordering::Relaxed) => Outcome::Retry(e),
                    Err(e) => Outcome::Failed(e),
                }
            }
        };
        let status = match &outcome {
            Outcome::Succeeded(_) => Status::Succeeded,
            Outcome::Cancelled(_) => Status::Cancelled,
            Outcome::Failed(_) | Outcome::Retry(_) => Status::Failed,
        };
        if self.record_end(&id, attempt, &outcome).await {
            self.metrics
                .finished(status, started.elapsed().as_secs_f64());
        }
        tracing::info!(job = %id, ?outcome, "attempt ended");
    }

    /// Writes down how attempt `attempt` of job `id` ended, trying again while the database
    /// is unreachable and the lease may still hold; true when it was recorded.
    async fn record_end(&self, id: &str, attempt: i32, outcome: &Outcome) -> bool {
        let backoff = Duration::from_secs(2 * attempt.max(1) as u64);
        let deadline = Instant::now() + self.lease * 2;
        let mut wait = Duration::from_millis(200);
        loop {
            match self
                .db
                .finish(&self.name, id, attempt, outcome, self.max_attempts, backoff)
                .await
            {
                Ok(true) => return true,
                Ok(false) => {
                    tracing::warn!(job = %id, attempt, "lease lost before the end was recorded");
                    return false;
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!(job = %id, error = %e, "cannot record the job's end; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    tracing::error!(job = %id, error = %e, "cannot record the job's end: another worker takes it when its lease ends");
                    return false;
                }
            }
        }
    }

    /// Renews the lease and writes the progress every beat; stops the engine when the owner
    /// cancels, the lease is lost, or the worker is stopping.
    async fn heartbeats(
        self: Arc<Self>,
        id: String,
        attempt: i32,
        state: Arc<Attempt>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.beat()) => {}
                _ = stop.changed() => {
                    state.stopping.store(true, Ordering::Relaxed);
                    state.control.cancel();
                    return;
                }
            }
            let steps = *state.steps.lock().unwrap_or_else(|e| e.into_inner());
            match self
                .db
                .heartbeat(&self.name, &id, attempt, self.lease, steps)
                .await
            {
                Ok(Beat::Held) => {}
                Ok(Beat::CancelRequested) => {
                    state.cancelled.store(true, Ordering::Relaxed);
                    state.control.cancel();
                }
                Ok(Beat::Lost) => {
                    state.lost.store(true, Ordering::Relaxed);
                    state.control.cancel();
                    return;
                }
                // The lease holds a while: the next beat tries again.
                Err(e) => tracing::warn!(job = %id, error = %e, "cannot renew the lease"),
            }
        }
    }

    /// Generates (on a blocking thread) attempt `attempt` of `owner`'s job `id`, each image
    /// put in the bucket as it comes.
    fn generate(
        &self,
        runtime: &tokio::runtime::Handle,
        id: &str,
        owner: &str,
        attempt: i32,
        work: &crate::work::Work,
        state: &Attempt,
    ) -> Result<usize, String> {
        self.runner.run(
            id,
            work,
            &state.control,
            &mut |steps| *state.steps.lock().unwrap_or_else(|e| e.into_inner()) = Some(steps),
            &mut |index, png| {
                runtime
                    .block_on(self.objects.put(owner, id, index, png))
                    .map_err(|e| {
                        tracing::warn!(job = %id, error = %e, "cannot store an image");
                        state.storage_failed.store(true, Ordering::Relaxed);
                        e.to_string()
                    })?;
                state.images.store(index + 1, Ordering::Relaxed);
                if let Err(e) =
                    runtime.block_on(self.db.stored_images(&self.name, id, attempt, index + 1))
                {
                    tracing::warn!(job = %id, error = %e, "cannot record an image");
                }
                Ok(())
            },
        )
    }
}

/// What the engine thread and the heartbeats share about one attempt.
#[derive(Default)]
struct Attempt {
    control: Control,
    steps: Mutex<Option<Steps>>,
    images: AtomicUsize,
    cancelled: AtomicBool,
    lost: AtomicBool,
    stopping: AtomicBool,
    storage_failed: AtomicBool,
}
