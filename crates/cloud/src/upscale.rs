//! An upscale on the server: a library image sent to `POST /upscale`, followed like a
//! generation, and the larger image added to the source's project with the source's recipe and
//! how the server enlarged it (as a local upscale records it).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use selfdiffusion_library::{ImageDetail, Library};
use selfdiffusion_protocol::{JobStatus, UpscaleRequest};
use selfdiffusion_recipe::{own_recipe, Upscale};

use crate::client::{CloudClient, CloudError};
use crate::job::{blocking, library_error};

/// Makes library image `image_id` `factor` (2 or 4) times larger on the server and adds the
/// result to the image's project, named as a local upscale names it. `on_status` sees the job's
/// progress. Setting `cancel` stops following and cancels the server's job; nothing is added.
/// The project cannot be deleted meanwhile. Returns the new image.
pub async fn upscale_in_cloud(
    client: &CloudClient,
    library: Arc<Library>,
    image_id: i64,
    factor: u32,
    timeout: Duration,
    cancel: &AtomicBool,
    on_status: &mut (dyn FnMut(&JobStatus) + Send),
) -> Result<ImageDetail, CloudError> {
    let (source, bytes) = {
        let library = library.clone();
        blocking(move || {
            let source = library.image(image_id).map_err(library_error)?;
            let file = library.path_of(&source.summary.file);
            let bytes = std::fs::read(&file)
                .map_err(|e| CloudError::Library(format!("cannot read {}: {e}", file.display())))?;
            Ok((source, bytes))
        })
        .await?
    };
    let _guard = library
        .begin_job(source.summary.project_id)
        .map_err(library_error)?;
    let request = UpscaleRequest {
        image: base64::engine::general_purpose::STANDARD.encode(&bytes),
        factor,
    };
    let job_id = client.upscale(&request).await?;
    let done = match client.wait(&job_id, timeout, cancel, on_status).await {
        Err(CloudError::Cancelled) => {
            if let Err(e) = client.cancel(&job_id).await {
                tracing::warn!(job_id, error = %e, "could not cancel the cloud upscale");
            }
            return Err(CloudError::Cancelled);
        }
        other => other?,
    };
    let url = &done.images[0]; // `wait` returns a succeeded job with its images
    let larger = client.download(url).await?;
    // The recipe stays the one that makes the source; the server's copy of it says how it
    // enlarged the image (a server that embeds none is recorded by its address).
    let mut recipe = source.recipe.clone();
    recipe.upscale = Some(
        own_recipe(&larger)
            .and_then(|r| r.upscale)
            .unwrap_or_else(|| Upscale {
                factor,
                upscaler: url.split('?').next().unwrap_or(url).to_owned(),
                source_sha256: source.sha256.clone(),
            }),
    );
    let name = source.summary.upscaled_name(factor);
    let project_id = source.summary.project_id;
    blocking(move || {
        library
            .add_image(project_id, &larger, &recipe, Some(&name))
            .map_err(library_error)
    })
    .await
}
