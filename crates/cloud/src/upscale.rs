//! An upscale on the server: a library image sent to `POST /upscale`, followed like a
//! generation, and the larger image added to the source's project with the source's recipe and
//! how the server enlarged it (as a local upscale records it). A submitted upscale can be
//! written down ([`crate::PendingJobs`]) and followed again after a restart.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use selfdiffusion_library::{ImageDetail, Library};
use selfdiffusion_protocol::{JobStatus, UpscaleRequest};
use selfdiffusion_recipe::{own_recipe, Upscale};
use serde::{Deserialize, Serialize};

use crate::client::{CloudClient, CloudError};
use crate::job::{blocking, library_error};

/// An upscale the server accepted: what to follow, and which library image it enlarges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmittedUpscale {
    /// The server's job id.
    pub job_id: String,
    /// The account that submitted it (only that account can follow it).
    pub username: String,
    /// The library image being enlarged; the larger copy takes its recipe.
    pub image_id: i64,
    /// The source's project, where the larger copy goes.
    pub project_id: i64,
    /// The source's file name, for the job list.
    pub source_name: String,
    /// 2 or 4.
    pub factor: u32,
}

/// Sends library image `image_id` to the server to be made `factor` (2 or 4) times larger.
pub async fn submit_cloud_upscale(
    client: &CloudClient,
    library: Arc<Library>,
    image_id: i64,
    factor: u32,
) -> Result<SubmittedUpscale, CloudError> {
    let (source, bytes) = blocking(move || {
        let source = library.image(image_id).map_err(library_error)?;
        let file = library.path_of(&source.summary.file);
        let bytes = std::fs::read(&file)
            .map_err(|e| CloudError::Library(format!("cannot read {}: {e}", file.display())))?;
        Ok((source, bytes))
    })
    .await?;
    let request = UpscaleRequest {
        image: base64::engine::general_purpose::STANDARD.encode(&bytes),
        factor,
    };
    let job_id = client.upscale(&request).await?;
    Ok(SubmittedUpscale {
        job_id,
        username: client.tokens().await.username().to_owned(),
        image_id,
        project_id: source.summary.project_id,
        source_name: source.summary.original_name,
        factor,
    })
}

/// Follows a submitted upscale until it ends and adds the larger image beside its source, named
/// as a local upscale names it. `on_status` sees the job's progress; setting `cancel` stops
/// following (the server's job is left to the caller). The project cannot be deleted
/// meanwhile. Returns the new image.
pub async fn follow_cloud_upscale(
    client: &CloudClient,
    job: &SubmittedUpscale,
    library: Arc<Library>,
    timeout: Duration,
    cancel: &AtomicBool,
    on_status: &mut (dyn FnMut(&JobStatus) + Send),
) -> Result<ImageDetail, CloudError> {
    let source = {
        let library = library.clone();
        let image_id = job.image_id;
        blocking(move || library.image(image_id).map_err(library_error)).await?
    };
    let _guard = library
        .begin_job(source.summary.project_id)
        .map_err(library_error)?;
    let done = client.wait(&job.job_id, timeout, cancel, on_status).await?;
    let url = &done.images[0]; // `wait` returns a succeeded job with its images
    let larger = client.download(url).await?;
    // The recipe stays the one that makes the source; the server's copy of it says how it
    // enlarged the image (a server that embeds none is recorded by its address).
    let mut recipe = source.recipe.clone();
    recipe.upscale = Some(
        own_recipe(&larger)
            .and_then(|r| r.upscale)
            .unwrap_or_else(|| Upscale {
                factor: job.factor,
                upscaler: url.split('?').next().unwrap_or(url).to_owned(),
                source_sha256: source.sha256.clone(),
            }),
    );
    let name = source.summary.upscaled_name(job.factor);
    let project_id = source.summary.project_id;
    blocking(move || {
        library
            .add_image(project_id, &larger, &recipe, Some(&name))
            .map_err(library_error)
    })
    .await
}

/// What a cloud upscale reports as it runs.
#[derive(Debug, Clone)]
pub enum UpscaleEvent {
    /// The server accepted it (write it down to follow it after a restart).
    Submitted(SubmittedUpscale),
    /// The server's latest answer about it.
    Status(JobStatus),
}

/// Makes library image `image_id` `factor` (2 or 4) times larger on the server and adds the
/// result to the image's project ([`submit_cloud_upscale`] then [`follow_cloud_upscale`]).
/// Setting `cancel` stops following and cancels the server's job; nothing is added. Returns the
/// new image.
pub async fn upscale_in_cloud(
    client: &CloudClient,
    library: Arc<Library>,
    image_id: i64,
    factor: u32,
    timeout: Duration,
    cancel: &AtomicBool,
    on_event: &mut (dyn FnMut(UpscaleEvent) + Send),
) -> Result<ImageDetail, CloudError> {
    let job = submit_cloud_upscale(client, library.clone(), image_id, factor).await?;
    on_event(UpscaleEvent::Submitted(job.clone()));
    let mut on_status = |s: &JobStatus| on_event(UpscaleEvent::Status(s.clone()));
    match follow_cloud_upscale(client, &job, library, timeout, cancel, &mut on_status).await {
        Err(CloudError::Cancelled) => {
            if let Err(e) = client.cancel(&job.job_id).await {
                tracing::warn!(job_id = job.job_id, error = %e, "could not cancel the cloud upscale");
            }
            Err(CloudError::Cancelled)
        }
        other => other,
    }
}
