//! Models in the app: the catalog models (installed in the Hugging Face cache or not) and
//! imported folders, each with the limits it takes, and the download of a catalog model.

use std::path::PathBuf;

use selfdiffusion_engine::{model_limits, Limits, ModelSpec};
use selfdiffusion_models::{Catalog, Defaults, Downloader, HubCache, LocalModels};
use serde::Serialize;
use tauri::{AppHandle, Emitter, State};

use crate::cancel::CancelSlot;
use crate::error::{blocking, CmdResult, CommandError, ErrorKind};
use crate::events;

/// A model the user can pick.
#[derive(Debug, Clone, Serialize)]
pub struct ModelEntry {
    /// Catalog id, or `local:<name>` for an imported folder.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Whether its files are all on this computer.
    pub installed: bool,
    /// Download size, for catalog models.
    pub approx_bytes: Option<u64>,
    /// The parameters it works best with.
    pub defaults: Defaults,
    /// What requests it takes (installed models only: read from its configs).
    pub limits: Option<Limits>,
    /// Its folder (or single-file checkpoint), when installed.
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// For a single-file checkpoint: the folder of its configs and tokenizer.
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

/// The cancel flag of the model download in progress.
#[derive(Default)]
pub struct Downloads {
    cancel: CancelSlot,
}

/// Every catalog model and imported folder (reads the disk: call off the UI thread).
pub fn installed_and_catalog() -> Vec<ModelEntry> {
    let cache = HubCache::from_env();
    let catalog = Catalog::builtin();
    let entry = |id: String,
                 name: String,
                 approx_bytes,
                 defaults: Defaults,
                 path: Option<PathBuf>,
                 config: Option<PathBuf>| {
        ModelEntry {
            limits: path
                .as_deref()
                .and_then(|p| model_limits(config.as_deref().unwrap_or(p)).ok()),
            installed: path.is_some(),
            id,
            name,
            approx_bytes,
            defaults,
            path,
            config,
        }
    };
    let mut out: Vec<ModelEntry> = catalog
        .models
        .iter()
        .map(|m| {
            entry(
                m.id.clone(),
                m.name.clone(),
                Some(m.approx_bytes),
                m.defaults.clone(),
                cache.complete_snapshot(m),
                None,
            )
        })
        .collect();
    let local = LocalModels::default_location()
        .and_then(|r| r.list().ok())
        .unwrap_or_default();
    out.extend(local.into_iter().map(|m| {
        entry(
            m.id,
            m.name,
            None,
            catalog.default_model().defaults.clone(),
            Some(m.path),
            m.config,
        )
    }));
    out
}

/// The installed model `id`, and where it is (with `loras` merged into it).
pub fn installed(id: &str, loras: Vec<(PathBuf, f64)>) -> CmdResult<(ModelEntry, ModelSpec)> {
    let model = installed_and_catalog()
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| CommandError::new(ErrorKind::NotFound, format!("unknown model {id}")))?;
    let path = model.path.clone().ok_or_else(|| {
        CommandError::new(
            ErrorKind::NotInstalled,
            format!("{} is not installed yet; download it first", model.name),
        )
    })?;
    let spec = ModelSpec {
        path,
        config: model.config.clone(),
        loras,
    };
    Ok((model, spec))
}

/// Catalog models (installed or not) and imported folders.
#[tauri::command]
pub async fn list_models() -> CmdResult<Vec<ModelEntry>> {
    blocking(|| Ok(installed_and_catalog())).await
}

/// The engine's own bounds on a request, before a model narrows them.
#[tauri::command]
pub fn engine_limits() -> Limits {
    selfdiffusion_engine::LIMITS
}

/// Downloads a catalog model into the Hugging Face cache (checking free disk first, resuming an
/// interrupted download), emitting `model-download-progress`. Returns the model list afterwards.
#[tauri::command]
pub async fn download_model(
    app: AppHandle,
    downloads: State<'_, Downloads>,
    id: String,
) -> CmdResult<Vec<ModelEntry>> {
    let model = Catalog::builtin().get(&id)?.clone();
    let cancel = downloads.cancel.begin();
    let result = blocking(move || {
        Downloader::from_env()
            .download(&model, &cancel, &mut |p| {
                let _ = app.emit(events::MODEL_DOWNLOAD_PROGRESS, p);
            })
            .map_err(CommandError::from)
    })
    .await;
    downloads.cancel.end();
    result?;
    blocking(|| Ok(installed_and_catalog())).await
}

/// Cancels the model download in progress; it resumes where it stopped next time.
#[tauri::command]
pub fn cancel_model_download(downloads: State<'_, Downloads>) {
    downloads.cancel.cancel();
}
