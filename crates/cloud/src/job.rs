//! One cloud job from request to library: submit, follow with backoff, download every image
//! and save it into a project with its cloud recipe.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use selfdiffusion_library::Library;

use selfdiffusion_protocol::{GenerateRequest, JobStatus};

use crate::client::{cloud_recipe, CloudClient, CloudError};

/// What a running cloud job reports.
#[derive(Debug, Clone)]
pub enum CloudJobEvent {
    /// The server accepted the job.
    Submitted {
        /// The server's job id.
        job_id: String,
    },
    /// The server's latest answer about the job.
    Status(JobStatus),
    /// An image was saved into the library.
    Saved {
        /// Its library id.
        image_id: i64,
    },
}

/// Runs `request` on the cloud and saves its images into project `project_id` of `library`.
/// Without a model in the request, the server's own (from `/health`) is named, so the recipe
/// records it. The project cannot be deleted meanwhile. Setting `cancel` stops following the job (images
/// already saved stay). Returns the library ids of the saved images.
pub async fn run_cloud_job(
    client: &CloudClient,
    request: &GenerateRequest,
    library: Arc<Library>,
    project_id: i64,
    timeout: Duration,
    cancel: &AtomicBool,
    on_event: &mut (dyn FnMut(CloudJobEvent) + Send),
) -> Result<Vec<i64>, CloudError> {
    let library_error = |e: selfdiffusion_library::Error| CloudError::Library(e.to_string());
    let _guard = library.begin_job(project_id).map_err(library_error)?;
    let mut request = request.clone();
    if request.model.is_none() {
        match client.server_info().await {
            Ok(info) => request.model = info.model,
            Err(CloudError::Offline(base)) => return Err(CloudError::Offline(base)),
            Err(e) => tracing::warn!(error = %e, "the server does not say which model it runs"),
        }
    }
    let request = &request;
    let job_id = client.generate(request).await?;
    on_event(CloudJobEvent::Submitted {
        job_id: job_id.clone(),
    });
    let done = client
        .wait(&job_id, timeout, cancel, &mut |s| {
            on_event(CloudJobEvent::Status(s.clone()))
        })
        .await?;
    let mut saved = Vec::with_capacity(done.images.len());
    for (index, url) in done.images.iter().enumerate() {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(CloudError::Cancelled);
        }
        let bytes = client.download(url).await?;
        let recipe = cloud_recipe(request, &job_id, index);
        let library = library.clone();
        let image = tokio::task::spawn_blocking(move || {
            library.add_image(project_id, &bytes, &recipe, None)
        })
        .await
        .map_err(|e| CloudError::Library(e.to_string()))?
        .map_err(|e| match e {
            selfdiffusion_library::Error::CorruptImage { .. } => CloudError::BadImage {
                url: url.clone(),
                reason: e.to_string(),
            },
            other => library_error(other),
        })?;
        on_event(CloudJobEvent::Saved {
            image_id: image.summary.id,
        });
        saved.push(image.summary.id);
    }
    Ok(saved)
}
