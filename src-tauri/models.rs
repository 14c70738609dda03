//! Models in the app: the catalog models (installed in the Hugging Face cache or not) and
//! imported folders, each with the limits it takes, and the download of a catalog model.

use std::path::PathBuf;

use selfdiffusion_engine::{
    family_of_configs, lora_family, BuiltinConfig, Checkpoint, Family, Limits, LoraFile,
    ModelFacts, ModelSpec,
};
use selfdiffusion_models::{
    verify, Catalog, Defaults, Downloader, HubCache, LocalModels, LoraEntry, LoraLibrary,
    VerifyReport,
};
use serde::Serialize;
use tauri::{AppHandle, Emitter, State};

use crate::cancel::CancelSlot;
use crate::dialogs::{self, WeightsKind};
use crate::error::{blocking, CmdResult, CommandError, ErrorKind};
use crate::events;

/// Where a model comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelSource {
    /// The built-in catalog (downloaded into the Hugging Face cache).
    Catalog,
    /// A diffusers folder the user imported.
    Folder,
    /// A single-file checkpoint the user imported (used in place).
    Checkpoint,
}

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
    /// Family, precision and size on disk (installed models only).
    pub facts: Option<ModelFacts>,
    /// Where it comes from.
    pub source: ModelSource,
    /// Its folder or file on disk, when installed.
    pub location: Option<PathBuf>,
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

/// Every catalog model and imported folder, with the facts the Models screen shows (reads the
/// disk: call off the UI thread).
pub fn installed_and_catalog() -> Vec<ModelEntry> {
    let mut models = entries();
    for m in &mut models {
        m.facts = m.spec().and_then(|s| s.facts().ok());
    }
    models
}

/// Every catalog model and imported folder, without the facts (which walk model folders).
fn entries() -> Vec<ModelEntry> {
    let cache = HubCache::from_env();
    let catalog = Catalog::builtin();
    let entry = |id: String,
                 name: String,
                 approx_bytes,
                 defaults: Defaults,
                 path: Option<PathBuf>,
                 config: Option<PathBuf>| {
        let mut entry = ModelEntry {
            limits: None,
            facts: None,
            source: match (&config, catalog.get(&id).is_ok()) {
                (Some(_), _) => ModelSource::Checkpoint,
                (None, true) => ModelSource::Catalog,
                (None, false) => ModelSource::Folder,
            },
            location: path.clone(),
            installed: path.is_some(),
            id,
            name,
            approx_bytes,
            defaults,
            path,
            config,
        };
        entry.limits = entry.spec().and_then(|s| s.limits().ok());
        entry
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
        // An imported model starts from the catalog defaults of its family (SDXL: 1024²).
        let family = family_of_configs(m.config.as_deref().unwrap_or(&m.path)).ok();
        let like = match family {
            Some(Family::Sdxl) => "sdxl-1.0",
            Some(Family::Sd2) => "sd-2.1",
            _ => "sd-1.5",
        };
        let defaults = catalog
            .get(like)
            .unwrap_or_else(|_| catalog.default_model())
            .defaults
            .clone();
        entry(m.id, m.name, None, defaults, Some(m.path), m.config)
    }));
    out
}

impl ModelEntry {
    /// Where an installed model is, without LoRAs.
    fn spec(&self) -> Option<ModelSpec> {
        Some(ModelSpec {
            path: self.path.clone()?,
            config: self.config.clone(),
            loras: Vec::new(),
        })
    }
}

/// The installed model `id`, and where it is (with `loras` merged into it).
pub fn installed(id: &str, loras: Vec<(PathBuf, f64)>) -> CmdResult<(ModelEntry, ModelSpec)> {
    let model = entries()
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| CommandError::new(ErrorKind::NotFound, format!("unknown model {id}")))?;
    let spec = ModelSpec {
        loras,
        ..model.spec().ok_or_else(|| {
            CommandError::new(
                ErrorKind::NotInstalled,
                format!("{} is not installed yet; download it first", model.name),
            )
        })?
    };
    Ok((model, spec))
}

/// Catalog models (installed or not) and imported folders and checkpoints.
#[tauri::command]
pub async fn list_models() -> CmdResult<Vec<ModelEntry>> {
    blocking(|| Ok(installed_and_catalog())).await
}

fn registry() -> CmdResult<LocalModels> {
    LocalModels::default_location()
        .ok_or_else(|| CommandError::failed("no data folder is known for this system"))
}

/// The LoRA library in the OS data folder.
pub(crate) fn lora_library() -> CmdResult<LoraLibrary> {
    LoraLibrary::default_location()
        .ok_or_else(|| CommandError::failed("no data folder is known for this system"))
}

/// Picks a single-file `.safetensors` checkpoint and imports it (used in place) with the configs
/// and tokenizer of `config_model_id`: `builtin` (the engine's for the file's family),
/// `builtin:<id>` (one set, e.g. `builtin:sd21-base`), or an installed model's id. Returns the
/// model list, or `None` when the picker was cancelled.
#[tauri::command]
pub async fn import_checkpoint(config_model_id: String) -> CmdResult<Option<Vec<ModelEntry>>> {
    let picked =
        tauri::async_runtime::spawn_blocking(|| dialogs::pick_weights(WeightsKind::Checkpoint))
            .await
            .map_err(CommandError::failed)?;
    let Some(file) = picked else {
        return Ok(None);
    };
    blocking(move || {
        let checkpoint = Checkpoint::open(&file)?;
        let builtin = match config_model_id.as_str() {
            "builtin" => Some(BuiltinConfig::for_checkpoint(&checkpoint, None)?),
            id => id
                .strip_prefix("builtin:")
                .map(|set| BuiltinConfig::for_checkpoint(&checkpoint, Some(set)))
                .transpose()?,
        };
        let config = match builtin {
            Some(set) => set.folder(&LocalModels::builtin_configs_root().ok_or_else(|| {
                CommandError::failed("no data folder is known for this system")
            })?)?,
            None => installed(&config_model_id, Vec::new())?
                .1
                .config_dir()
                .to_path_buf(),
        };
        registry()?.import_checkpoint(&file, &config)?;
        Ok(Some(installed_and_catalog()))
    })
    .await
}

/// Removes a model: an imported folder or checkpoint leaves the list (its files stay where they
/// are); a downloaded catalog model's files are deleted from the cache (it stays in the list, to
/// download again). Returns the list.
#[tauri::command]
pub async fn forget_model(id: String) -> CmdResult<Vec<ModelEntry>> {
    blocking(move || {
        match Catalog::builtin().get(&id) {
            Ok(model) => {
                let freed = HubCache::from_env().remove(model)?;
                tracing::info!(model = %id, freed, "downloaded model deleted");
            }
            Err(_) => {
                registry()?.remove(&id)?;
            }
        }
        Ok(installed_and_catalog())
    })
    .await
}

/// Checks a downloaded catalog model's files against their known sizes and hashes.
#[tauri::command]
pub async fn verify_model(id: String) -> CmdResult<VerifyReport> {
    blocking(move || {
        let catalog = Catalog::builtin();
        let model = catalog.get(&id).map_err(|_| {
            CommandError::invalid(
                "only downloaded catalog models carry checksums to verify against",
            )
        })?;
        Ok(verify(&HubCache::from_env(), model)?)
    })
    .await
}

/// An imported LoRA and the family it fits, when its layers tell.
#[derive(Debug, Clone, Serialize)]
pub struct LoraItem {
    /// The LoRA.
    #[serde(flatten)]
    pub entry: LoraEntry,
    /// `sd1`, `sd2` or `sdxl`.
    pub family: Option<Family>,
}

/// The LoRAs of `library`, each with its family (read from the file headers).
fn lora_items(library: &LoraLibrary) -> CmdResult<Vec<LoraItem>> {
    Ok(library
        .list()?
        .into_iter()
        .map(|entry| LoraItem {
            family: lora_family(&entry.path).ok().flatten(),
            entry,
        })
        .collect())
}

/// The imported LoRAs, by name.
#[tauri::command]
pub async fn list_loras() -> CmdResult<Vec<LoraItem>> {
    blocking(|| lora_items(&lora_library()?)).await
}

/// Picks a LoRA file, checks it is one, and copies it into the LoRA library. Returns the LoRAs,
/// or `None` when the picker was cancelled.
#[tauri::command]
pub async fn import_lora() -> CmdResult<Option<Vec<LoraItem>>> {
    let picked = tauri::async_runtime::spawn_blocking(|| dialogs::pick_weights(WeightsKind::Lora))
        .await
        .map_err(CommandError::failed)?;
    let Some(file) = picked else {
        return Ok(None);
    };
    blocking(move || {
        LoraFile::open(&file)?;
        let library = lora_library()?;
        library.import(&file)?;
        Ok(Some(lora_items(&library)?))
    })
    .await
}

/// Removes an imported LoRA; returns the LoRAs left.
#[tauri::command]
pub async fn remove_lora(name: String) -> CmdResult<Vec<LoraItem>> {
    blocking(move || {
        let library = lora_library()?;
        library.remove(&name)?;
        lora_items(&library)
    })
    .await
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
