//! `selfdiffusion-cli models`: the catalog, downloads, verification and imported folders.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use selfdiffusion_engine::{BuiltinConfig, Checkpoint, LoraFile, ModelSpec};
use selfdiffusion_models::{
    check_folder, verify, Catalog, Downloader, HubCache, LocalModels, LoraLibrary,
};
use serde::Serialize;

/// `models` subcommands.
#[derive(Subcommand)]
pub enum ModelsAction {
    /// The catalog and imported folders, with what is installed.
    List,
    /// Download a catalog model into the Hugging Face cache (resumes an interrupted download).
    Download {
        /// Catalog id, e.g. sd-1.5.
        id: String,
    },
    /// Check a downloaded model's files.
    Verify {
        /// Catalog id.
        id: String,
    },
    /// Remember a diffusers model folder, or a single-file `.safetensors` checkpoint (used in
    /// place) with its configs.
    Import {
        /// The folder or the checkpoint file.
        path: PathBuf,
        /// For a checkpoint: a built-in set (`sd15`, `sd21-v`, `sd21-base`, `sdxl`; default: the
        /// one of the file's family), or a diffusers folder (or catalog id) of its family.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// What `loras` does.
#[derive(Subcommand)]
pub enum LorasAction {
    /// The imported LoRAs, by the name prompts use (`<lora:name:0.8>`).
    List,
    /// Check a LoRA `.safetensors` file and copy it into the LoRA library.
    Import {
        /// The file.
        file: PathBuf,
    },
    /// Remove an imported LoRA.
    Remove {
        /// Its name.
        name: String,
    },
}

#[derive(Serialize)]
struct Listed {
    id: String,
    name: String,
    source: String,
    installed: Option<PathBuf>,
    approx_bytes: Option<u64>,
}

fn registry() -> Result<LocalModels> {
    LocalModels::default_location().context("no data folder is known for this system")
}

/// The config folder of the single-file checkpoint `file`: `config` as a built-in set
/// (`sd15`, `sd21-v`, `sd21-base`, `sdxl`), a catalog id, an imported model or a folder; without
/// it, the built-in set of the file's family. Refuses a file the engine does not read.
pub fn checkpoint_config(file: &Path, config: Option<&Path>) -> Result<PathBuf> {
    let checkpoint = Checkpoint::open(file)?;
    let id = config.map(|c| c.to_string_lossy().into_owned());
    let set = match id.as_deref() {
        Some(id) if BuiltinConfig::parse(id).is_none() => {
            return Ok(resolve(Path::new(id))?.config_dir().to_path_buf());
        }
        id => BuiltinConfig::for_checkpoint(&checkpoint, id)?,
    };
    let root =
        LocalModels::builtin_configs_root().context("no data folder is known for this system")?;
    Ok(set.folder(&root)?)
}

/// Finds a model folder: a path, a downloaded catalog id, or an imported model id.
pub fn resolve(model: &Path) -> Result<ModelSpec> {
    resolve_folder(model).map(|spec| spec.unwrap_or_else(|| ModelSpec::folder(model)))
}

/// A catalog id, an imported model id or a folder, as a model spec; `Ok(None)` for a folder
/// that is to be checked by loading it.
fn resolve_folder(model: &Path) -> Result<Option<ModelSpec>> {
    if model.is_dir() {
        return Ok(Some(ModelSpec::folder(model)));
    }
    let key = model.to_string_lossy();
    let catalog = Catalog::builtin();
    if let Ok(entry) = catalog.get(&key) {
        return HubCache::from_env()
            .complete_snapshot(entry)
            .map(|dir| Some(ModelSpec::folder(dir)))
            .with_context(|| {
                format!(
                    "{key} is not downloaded yet: run `selfdiffusion-cli models download {key}`"
                )
            });
    }
    if let Some(local) = registry()?.list()?.into_iter().find(|m| m.id == key) {
        return Ok(Some(ModelSpec {
            path: local.path,
            config: local.config,
            loras: Vec::new(),
        }));
    }
    check_folder(model)?;
    Ok(None)
}

/// The LoRA library.
pub fn lora_library() -> Result<LoraLibrary> {
    LoraLibrary::default_location().context("no data folder is known for this system")
}

/// Runs a `loras` subcommand.
pub fn run_loras(action: LorasAction, json: bool) -> Result<()> {
    let library = lora_library()?;
    match action {
        LorasAction::List => {
            let loras = library.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&loras)?);
            } else {
                for lora in loras {
                    println!(
                        "{}\t{} bytes\t{}",
                        lora.name,
                        lora.bytes,
                        lora.path.display()
                    );
                }
            }
        }
        LorasAction::Import { file } => {
            // Refused before anything is copied when it is not a LoRA this engine reads.
            LoraFile::open(&file)?;
            let entry = library.import(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entry)?);
            } else {
                println!("imported {} as <lora:{}:1>", file.display(), entry.name);
            }
        }
        LorasAction::Remove { name } => {
            library.remove(&name)?;
            if !json {
                println!("removed {name}");
            }
        }
    }
    Ok(())
}

/// Runs a `models` subcommand.
pub fn run(action: ModelsAction, json: bool) -> Result<()> {
    let catalog = Catalog::builtin();
    match action {
        ModelsAction::List => {
            let cache = HubCache::from_env();
            let mut rows: Vec<Listed> = catalog
                .models
                .iter()
                .map(|m| Listed {
                    id: m.id.clone(),
                    name: m.name.clone(),
                    source: m.repo.clone(),
                    installed: cache.complete_snapshot(m),
                    approx_bytes: Some(m.approx_bytes),
                })
                .collect();
            rows.extend(registry()?.list()?.into_iter().map(|m| Listed {
                id: m.id,
                name: m.name,
                source: "imported".into(),
                installed: Some(m.path),
                approx_bytes: None,
            }));
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in rows {
                    let state = match (&r.installed, r.approx_bytes) {
                        (Some(p), _) => format!("installed at {}", p.display()),
                        (None, Some(b)) => {
                            format!("not downloaded (about {:.1} GB)", b as f64 / 1e9)
                        }
                        (None, None) => "missing".into(),
                    };
                    println!("{:<16} {:<24} {}", r.id, r.name, state);
                }
            }
        }
        ModelsAction::Download { id } => {
            let entry = catalog.get(&id)?;
            let downloader = Downloader::from_env();
            let bar = if json {
                ProgressBar::hidden()
            } else {
                ProgressBar::new(entry.approx_bytes)
            };
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:<40} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            let path = downloader.download(entry, &AtomicBool::new(false), &mut |p| {
                bar.set_length(p.bytes_total.max(1));
                bar.set_position(p.bytes_done);
                bar.set_message(p.file.clone());
            })?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::json!({"id": id, "path": path}));
            } else {
                println!("{id} is ready at {}", path.display());
            }
        }
        ModelsAction::Verify { id } => {
            let entry = catalog.get(&id)?;
            let report = verify(&HubCache::from_env(), entry)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{id}: {} ok, {} missing, {} corrupt",
                    report.ok.len(),
                    report.missing.len(),
                    report.corrupt.len()
                );
            }
            if !report.is_ok() {
                bail!("{id} is incomplete or damaged: run `selfdiffusion-cli models download {id}` to repair it");
            }
        }
        ModelsAction::Import { path, config } => {
            let model = match config {
                _ if path.is_file() => {
                    let config = checkpoint_config(&path, config.as_deref())?;
                    registry()?.import_checkpoint(&path, &config)?
                }
                Some(_) => bail!(
                    "--config goes with a single-file checkpoint; {} is a folder",
                    path.display()
                ),
                None => registry()?.import(&path)?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&model)?);
            } else {
                println!("imported {} as {}", model.path.display(), model.id);
            }
        }
    }
    Ok(())
}
