//! One cloud job from request to library: submit, follow with backoff, download every image
//! and save it into a project with its cloud recipe. A submitted job (a generation or an
//! upscale) can be written down ([`PendingJobs`]) and followed again after a restart, so closing
//! the app loses nothing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfdiffusion_library::Library;
use selfdiffusion_protocol::{GenerateRequest, JobStatus};
use serde::{Deserialize, Serialize};

use crate::client::{received_recipe, CloudClient, CloudError};
use crate::upscale::SubmittedUpscale;

/// Runs `work` (library and file access) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CloudError> + Send + 'static,
) -> Result<T, CloudError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CloudError::Library(e.to_string()))?
}

/// A library failure, as the cloud side reports it.
pub(crate) fn library_error(e: selfdiffusion_library::Error) -> CloudError {
    CloudError::Library(e.to_string())
}

/// A job the server accepted: what to follow, and where its images go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmittedJob {
    /// The server's job id.
    pub job_id: String,
    /// The account that submitted it (only that account can follow it).
    pub username: String,
    /// The project the images go to.
    pub project_id: i64,
    /// The request as sent (the model filled in), for the recipes.
    pub request: GenerateRequest,
}

/// What a running cloud job reports.
#[derive(Debug, Clone)]
pub enum CloudJobEvent {
    /// The server accepted the job.
    Submitted(Box<SubmittedJob>),
    /// The server's latest answer about the job.
    Status(JobStatus),
    /// An image was saved into the library.
    Saved {
        /// Its library id.
        image_id: i64,
    },
}

/// Submits `request` for project `project_id`. Without a model in the request, the server's own
/// (from `/health`) is named, so the recipes record it.
pub async fn submit_cloud_job(
    client: &CloudClient,
    request: &GenerateRequest,
    project_id: i64,
) -> Result<SubmittedJob, CloudError> {
    let mut request = request.clone();
    if request.model.is_none() {
        match client.server_info().await {
            Ok(info) => request.model = info.model,
            Err(CloudError::Offline(base)) => return Err(CloudError::Offline(base)),
            Err(e) => tracing::warn!(error = %e, "the server does not say which model it runs"),
        }
    }
    let job_id = client.generate(&request).await?;
    Ok(SubmittedJob {
        job_id,
        username: client.tokens().await.username().to_owned(),
        project_id,
        request,
    })
}

/// Follows a submitted job until it ends and saves its images into `library`, each with the
/// recipe its server embedded ([`received_recipe`]). The project cannot
/// be deleted meanwhile. Setting `cancel` stops following (images already saved stay). Returns
/// the library ids of the saved images.
pub async fn follow_cloud_job(
    client: &CloudClient,
    job: &SubmittedJob,
    library: Arc<Library>,
    timeout: Duration,
    cancel: &AtomicBool,
    on_event: &mut (dyn FnMut(CloudJobEvent) + Send),
) -> Result<Vec<i64>, CloudError> {
    let _guard = library.begin_job(job.project_id).map_err(library_error)?;
    let done = client
        .wait(&job.job_id, timeout, cancel, &mut |s| {
            on_event(CloudJobEvent::Status(s.clone()))
        })
        .await?;
    let mut saved = Vec::with_capacity(done.images.len());
    for (index, url) in done.images.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(CloudError::Cancelled);
        }
        let bytes = client.download(url).await?;
        let recipe = received_recipe(&bytes, &job.request, &job.job_id, index);
        let library = library.clone();
        let project_id = job.project_id;
        let url = url.clone();
        let image = blocking(move || {
            library
                .add_image(project_id, &bytes, &recipe, None)
                .map_err(|e| match e {
                    selfdiffusion_library::Error::CorruptImage { .. } => CloudError::BadImage {
                        url,
                        reason: e.to_string(),
                    },
                    other => library_error(other),
                })
        })
        .await?;
        on_event(CloudJobEvent::Saved {
            image_id: image.summary.id,
        });
        saved.push(image.summary.id);
    }
    Ok(saved)
}

/// Submits `request` and follows it into project `project_id` of `library`
/// ([`submit_cloud_job`] then [`follow_cloud_job`]).
pub async fn run_cloud_job(
    client: &CloudClient,
    request: &GenerateRequest,
    library: Arc<Library>,
    project_id: i64,
    timeout: Duration,
    cancel: &AtomicBool,
    on_event: &mut (dyn FnMut(CloudJobEvent) + Send),
) -> Result<Vec<i64>, CloudError> {
    let _guard = library.begin_job(project_id).map_err(library_error)?;
    let job = submit_cloud_job(client, request, project_id).await?;
    on_event(CloudJobEvent::Submitted(Box::new(job.clone())));
    follow_cloud_job(client, &job, library, timeout, cancel, on_event).await
}

/// Whether a job that ended with `outcome` should be followed again later: only when the cloud
/// could not be reached or the wait timed out (the server may still finish it).
pub fn worth_resuming<T>(outcome: &Result<T, CloudError>) -> bool {
    matches!(
        outcome,
        Err(CloudError::Offline(_) | CloudError::TimedOut(_))
    )
}

/// A cloud job written down until its result is saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PendingJob {
    /// A generation (the only kind files written before upscales were kept hold).
    Generation(Box<SubmittedJob>),
    /// An upscale of a library image.
    Upscale(SubmittedUpscale),
}

impl PendingJob {
    /// The server's job id.
    pub fn job_id(&self) -> &str {
        match self {
            PendingJob::Generation(job) => &job.job_id,
            PendingJob::Upscale(job) => &job.job_id,
        }
    }

    /// The account that submitted it.
    pub fn username(&self) -> &str {
        match self {
            PendingJob::Generation(job) => &job.username,
            PendingJob::Upscale(job) => &job.username,
        }
    }
}

/// Submitted jobs not yet saved, kept in a JSON file (written atomically) so they can be
/// followed again after a restart.
pub struct PendingJobs {
    file: PathBuf,
    lock: Mutex<()>,
}

impl PendingJobs {
    /// The list in `file`.
    pub fn new(file: impl Into<PathBuf>) -> Self {
        PendingJobs {
            file: file.into(),
            lock: Mutex::new(()),
        }
    }

    /// The jobs written down (none when the file is missing or unreadable).
    pub fn list(&self) -> Vec<PendingJob> {
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.read()
    }

    fn read(&self) -> Vec<PendingJob> {
        let Ok(text) = std::fs::read_to_string(&self.file) else {
            return Vec::new();
        };
        serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(file = %self.file.display(), error = %e, "unreadable pending cloud jobs; ignoring them");
            Vec::new()
        })
    }

    fn write(&self, jobs: &[PendingJob]) -> Result<(), CloudError> {
        let failed =
            |e: std::io::Error| CloudError::Library(format!("{}: {e}", self.file.display()));
        let body = serde_json::to_vec_pretty(jobs).expect("jobs serialise");
        selfdiffusion_files::write_atomic(&self.file, &body, selfdiffusion_files::Access::Private)
            .map_err(failed)
    }

    /// Writes `job` down.
    pub fn add(&self, job: &PendingJob) -> Result<(), CloudError> {
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut jobs = self.read();
        jobs.retain(|j| j.job_id() != job.job_id());
        jobs.push(job.clone());
        self.write(&jobs)
    }

    /// Crosses job `job_id` off.
    pub fn remove(&self, job_id: &str) -> Result<(), CloudError> {
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut jobs = self.read();
        let before = jobs.len();
        jobs.retain(|j| j.job_id() != job_id);
        if jobs.len() == before {
            return Ok(());
        }
        self.write(&jobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str) -> PendingJob {
        PendingJob::Generation(Box::new(SubmittedJob {
            job_id: id.into(),
            username: "ada".into(),
            project_id: 3,
            request: GenerateRequest {
                prompt: "a lighthouse".into(),
                samples: 2,
                seed: Some(9),
                ..GenerateRequest::default()
            },
        }))
    }

    fn upscale(id: &str) -> PendingJob {
        PendingJob::Upscale(SubmittedUpscale {
            job_id: id.into(),
            username: "bo".into(),
            image_id: 12,
            project_id: 3,
            source_name: "lake.png".into(),
            factor: 4,
        })
    }

    #[test]
    fn pending_jobs_survive_a_restart_and_are_crossed_off() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cfg/cloud-jobs.json");
        let pending = PendingJobs::new(&file);
        assert!(pending.list().is_empty());
        pending.add(&job("a")).unwrap();
        pending.add(&upscale("u")).unwrap();
        pending.add(&job("b")).unwrap();
        pending.add(&job("a")).unwrap();
        let again = PendingJobs::new(&file);
        let ids: Vec<String> = again.list().iter().map(|j| j.job_id().to_owned()).collect();
        assert_eq!(ids, ["u", "b", "a"]);
        assert_eq!(again.list()[0], upscale("u"), "an upscale stays one");
        assert_eq!(again.list()[0].username(), "bo");
        assert_eq!(again.list()[1], job("b"));
        again.remove("b").unwrap();
        again.remove("u").unwrap();
        again.remove("unknown").unwrap();
        assert_eq!(PendingJobs::new(&file).list(), [job("a")]);
        std::fs::write(&file, "{broken").unwrap();
        assert!(
            PendingJobs::new(&file).list().is_empty(),
            "a broken file is ignored"
        );
    }

    #[test]
    fn a_file_written_before_upscales_were_kept_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cloud-jobs.json");
        let PendingJob::Generation(old) = job("a") else {
            unreachable!()
        };
        std::fs::write(&file, serde_json::to_vec(&[old]).unwrap()).unwrap();
        assert_eq!(PendingJobs::new(&file).list(), [job("a")]);
    }

    #[test]
    fn only_unreachable_or_slow_jobs_are_worth_resuming() {
        let worth = |outcome: Result<Vec<i64>, CloudError>| worth_resuming(&outcome);
        assert!(worth(Err(CloudError::Offline("x".into()))));
        assert!(worth(Err(CloudError::TimedOut(Duration::from_secs(1)))));
        assert!(!worth(Ok(vec![1])));
        assert!(!worth(Err(CloudError::Cancelled)));
        assert!(!worth(Err(CloudError::JobFailed("gpu".into()))));
    }
}
