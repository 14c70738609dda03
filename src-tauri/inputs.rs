//! img2img, inpainting and upscaling in the app: the image a run starts from and the mask
//! painted over it are kept in the library by content (`keep_input`, `input_info`), a job's
//! input is made from them (`job_input`), and any image can be made larger (`upscale_image`,
//! with the ESRGAN model chosen in Settings — `upscaler_info`, `choose_upscaler` — or Lanczos).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use base64::Engine as _;
use selfdiffusion_cloud::{GenerateRequest, JobStatus};
use selfdiffusion_engine::{
    upscale, DeviceChoice, ImageInput, Mask, Picture, Upscaler, MAX_INPUT_PIXELS,
};
use selfdiffusion_library::{ImageDetail, Library, Pixels};
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Emitter, State};

use crate::error::{blocking, CmdResult, CommandError};
use crate::state::AppState;

/// A kept input as the UI shows it.
#[derive(Serialize)]
pub struct InputInfo {
    /// Its SHA-256, as recipes name it.
    sha256: String,
    /// The file (for the asset protocol).
    path: PathBuf,
    /// Width in pixels.
    width: usize,
    /// Height in pixels.
    height: usize,
}

fn read(path: &std::path::Path) -> CmdResult<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| CommandError::failed(format!("cannot read {}: {e}", path.display())))
}

/// Where the bytes of an input come from.
fn info(library: &Library, sha256: String) -> CmdResult<InputInfo> {
    let path = library.input_path(&sha256)?;
    let picture = Picture::decode(&read(&path)?, MAX_INPUT_PIXELS)?;
    described(library, &picture)
}

/// The kept input `picture` was decoded from, as the UI shows it.
fn described(library: &Library, picture: &Picture) -> CmdResult<InputInfo> {
    Ok(InputInfo {
        path: library.input_path(&picture.sha256)?,
        sha256: picture.sha256.clone(),
        width: picture.width,
        height: picture.height,
    })
}

/// Keeps an image to start from, or a painted mask: a library image (`image_id`), a file
/// (`path`, e.g. one dropped on the window) or the bytes of a PNG (`data_base64`, the mask
/// painter's). The bytes must decode as an image; nothing is kept otherwise.
#[tauri::command]
pub async fn keep_input(
    state: State<'_, AppState>,
    image_id: Option<i64>,
    path: Option<PathBuf>,
    data_base64: Option<String>,
) -> CmdResult<InputInfo> {
    let library = state.library()?;
    blocking(move || {
        let bytes = match (image_id, path, data_base64) {
            (Some(id), None, None) => read(&library.path_of(&library.image(id)?.summary.file))?,
            (None, Some(path), None) => read(&path)?,
            (None, None, Some(data)) => base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| CommandError::invalid(format!("the image data is not base64: {e}")))?,
            _ => {
                return Err(CommandError::invalid(
                    "give one of an image id, a file or image data",
                ))
            }
        };
        // Decoded once: what is not an image is refused before anything is kept, and the
        // size shown comes from this decode.
        let picture = Picture::decode(&bytes, MAX_INPUT_PIXELS)?;
        library.keep_input(&bytes)?;
        described(&library, &picture)
    })
    .await
}

/// The kept input `sha256` (reuse parameters shows the image a recipe started from).
#[tauri::command]
pub async fn input_info(state: State<'_, AppState>, sha256: String) -> CmdResult<InputInfo> {
    let library = state.library()?;
    blocking(move || info(&library, sha256)).await
}

/// What the generate form sends to start from an image.
#[derive(Deserialize)]
pub struct InputParams {
    /// The kept image to start from.
    image_sha256: String,
    /// How much of it is redrawn, 0 to 1.
    strength: f64,
    /// The kept mask (white repaints), for inpainting.
    mask_sha256: Option<String>,
    /// Outpainting: pixels added left, right, top and bottom.
    outpaint: Option<[u32; 4]>,
    /// Put the image's own pixels back outside the mask, across an edge blurred by this many
    /// pixels.
    #[serde(default)]
    paste_back: Option<u32>,
}

impl InputParams {
    /// Puts the kept image (and mask), the strength and the margins into a cloud request.
    pub fn send_with(&self, library: &Library, request: &mut GenerateRequest) -> CmdResult<()> {
        let encode = |sha: &str| -> CmdResult<String> {
            Ok(base64::engine::general_purpose::STANDARD.encode(read(&library.input_path(sha)?)?))
        };
        request.init_image = Some(encode(&self.image_sha256)?);
        request.mask = self.mask_sha256.as_deref().map(encode).transpose()?;
        request.strength = Some(self.strength);
        request.outpaint = self.outpaint;
        request.paste_back = self.paste_back;
        Ok(())
    }
}

/// The engine's input for a job, read from the kept files.
pub fn job_input(library: &Library, params: InputParams) -> CmdResult<ImageInput> {
    let picture = Picture::decode(
        &read(&library.input_path(&params.image_sha256)?)?,
        MAX_INPUT_PIXELS,
    )?;
    let (image, mask) = match (params.outpaint, params.mask_sha256) {
        (Some(_), Some(_)) => {
            return Err(CommandError::invalid(
                "a job either paints a mask or outpaints, not both",
            ))
        }
        (Some(margins), None) => {
            let (canvas, mask) = picture.extended(margins, MAX_INPUT_PIXELS)?;
            (canvas, Some(mask))
        }
        (None, Some(sha)) => (
            picture,
            Some(Mask::decode(
                &read(&library.input_path(&sha)?)?,
                MAX_INPUT_PIXELS,
            )?),
        ),
        (None, None) => (picture, None),
    };
    Ok(ImageInput {
        image: Arc::new(image),
        strength: params.strength,
        mask: mask.map(Arc::new),
        outpaint: params.outpaint,
        paste_back: params.paste_back,
    })
}

/// The ESRGAN upscaler in use, as Settings shows it.
#[derive(Serialize)]
pub struct UpscalerInfo {
    /// Its name (the file's, without the extension), as recipes record it.
    name: String,
    /// The file.
    path: PathBuf,
    /// How many times larger it makes images.
    scale: usize,
}

impl UpscalerInfo {
    fn of(upscaler: &Upscaler) -> Self {
        UpscalerInfo {
            name: upscaler.name(),
            path: upscaler.file.clone(),
            scale: upscaler.scale,
        }
    }
}

/// The ESRGAN upscaler chosen in Settings, read for `device` (so a file that went missing
/// says so).
fn chosen_upscaler(
    app: &AppHandle,
    device: &selfdiffusion_engine::Device,
) -> CmdResult<Option<Upscaler>> {
    match crate::settings::upscaler(app) {
        Some(file) => Ok(Some(Upscaler::load(&file, device)?)),
        None => Ok(None),
    }
}

/// The ESRGAN upscaler in use, or `None` (Lanczos).
#[tauri::command]
pub async fn upscaler_info(app: AppHandle) -> CmdResult<Option<UpscalerInfo>> {
    blocking(move || {
        Ok(chosen_upscaler(&app, &selfdiffusion_engine::Device::Cpu)?
            .as_ref()
            .map(UpscalerInfo::of))
    })
    .await
}

/// Picks an ESRGAN upscaler file (native dialog), checks that it is one, and uses it from now
/// on; `clear` goes back to Lanczos. Returns what is in use afterwards.
#[tauri::command]
pub async fn choose_upscaler(app: AppHandle, clear: bool) -> CmdResult<Option<UpscalerInfo>> {
    blocking(move || {
        if clear {
            crate::settings::set_upscaler(&app, None).map_err(CommandError::failed)?;
            return Ok(None);
        }
        let Some(file) = crate::dialogs::pick_weights(crate::dialogs::WeightsKind::Upscaler) else {
            let kept = chosen_upscaler(&app, &selfdiffusion_engine::Device::Cpu)?;
            return Ok(kept.as_ref().map(UpscalerInfo::of));
        };
        let upscaler = Upscaler::load(&file, &selfdiffusion_engine::Device::Cpu)?;
        crate::settings::set_upscaler(&app, Some(&file)).map_err(CommandError::failed)?;
        Ok(Some(UpscalerInfo::of(&upscaler)))
    })
    .await
}

/// How far an upscale is (the `upscale-progress` event).
#[derive(Debug, Clone, Serialize)]
pub struct UpscaleProgressEvent {
    /// Tiles done.
    pub done: usize,
    /// Tiles in all.
    pub total: usize,
    /// Seconds left, estimated from the tiles done.
    pub eta_s: Option<f64>,
}

/// Makes a library image 2 or 4 times larger and adds the result to its project, with its
/// recipe and how it was upscaled: here with the ESRGAN model chosen in Settings (else Lanczos),
/// or, with `cloud`, on the signed-in account's server. Emits `upscale-progress` (tiles here,
/// percent in the cloud); `cancel_upscale` stops it (before the next tile here; the server's job
/// is cancelled) and nothing is added.
#[tauri::command]
pub async fn upscale_image(
    app: AppHandle,
    state: State<'_, AppState>,
    image_id: i64,
    factor: u32,
    cloud: bool,
) -> CmdResult<ImageDetail> {
    let library = state.library()?;
    let cancel = state.upscale_cancel.begin();
    let result = if cloud {
        upscale_in_cloud(&app, library, image_id, factor, &cancel).await
    } else {
        blocking(move || upscale_here(&app, &library, image_id, factor, &cancel)).await
    };
    state.upscale_cancel.end();
    result
}

/// `upscale_image` on this machine.
fn upscale_here(
    app: &AppHandle,
    library: &Library,
    image_id: i64,
    factor: u32,
    cancel: &AtomicBool,
) -> CmdResult<ImageDetail> {
    let source = library.image(image_id)?;
    // The project stays while the upscaled image is written into it.
    let _guard = library.begin_job(source.summary.project_id)?;
    let picture = Picture::decode(
        &read(&library.path_of(&source.summary.file))?,
        MAX_INPUT_PIXELS,
    )?;
    let device = DeviceChoice::Auto.open()?;
    let model = chosen_upscaler(app, &device)?;
    let (larger, how) = upscale(
        &picture,
        factor,
        model.as_ref().map(|model| (model, &device)),
        MAX_INPUT_PIXELS,
        cancel,
        &mut |p| {
            let event = UpscaleProgressEvent {
                done: p.done,
                total: p.total,
                eta_s: p.eta.map(|eta| eta.as_secs_f64()),
            };
            let _ = app.emit(crate::events::UPSCALE_PROGRESS, event);
        },
    )?;
    // The recipe stays the one that makes the source (as AUTOMATIC1111's Extras keep it); the
    // upscale says how it was enlarged, and the library knows the pixel size.
    let mut recipe = source.recipe.clone();
    recipe.upscale = Some(how);
    let pixels = Pixels {
        width: larger.width as u32,
        height: larger.height as u32,
        rgb: &larger.rgb,
    };
    let name = source.summary.upscaled_name(factor);
    Ok(library.add_generated(source.summary.project_id, pixels, &recipe, Some(&name))?)
}

/// `upscale_image` on the signed-in account's server; progress in percent (of 100).
async fn upscale_in_cloud(
    app: &AppHandle,
    library: Arc<Library>,
    image_id: i64,
    factor: u32,
    cancel: &AtomicBool,
) -> CmdResult<ImageDetail> {
    let mut on_status = |status: &JobStatus| {
        let event = UpscaleProgressEvent {
            done: (status.progress.unwrap_or(0.0).clamp(0.0, 1.0) * 100.0).round() as usize,
            total: 100,
            eta_s: None,
        };
        let _ = app.emit(crate::events::UPSCALE_PROGRESS, event);
    };
    crate::cloud::upscale(app, library, image_id, factor, cancel, &mut on_status).await
}

/// Cancels the upscale in progress, if any.
#[tauri::command]
pub fn cancel_upscale(state: State<'_, AppState>) {
    state.upscale_cancel.cancel();
}
