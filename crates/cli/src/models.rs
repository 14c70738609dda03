//! `selfdiffusion-cli models`: the catalog, downloads, verification and imported folders.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use selfdiffusion_models::{check_folder, verify, Catalog, Downloader, HubCache, LocalModels};
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
    /// Remember a diffusers model folder from disk.
    Import {
        /// The folder.
        folder: PathBuf,
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

/// Finds a model folder: a path, a downloaded catalog id, or an imported model id.
pub fn resolve(model: &Path) -> Result<PathBuf> {
    if model.is_dir() {
        return Ok(model.to_path_buf());
    }
    let key = model.to_string_lossy();
    let catalog = Catalog::builtin();
    if let Ok(entry) = catalog.get(&key) {
        return HubCache::from_env()
            .complete_snapshot(entry)
            .with_context(|| {
                format!(
                    "{key} is not downloaded yet: run `selfdiffusion-cli models download {key}`"
                )
            });
    }
    if let Some(local) = registry()?.list()?.into_iter().find(|m| m.id == key) {
        return Ok(local.path);
    }
    check_folder(model)?;
    Ok(model.to_path_buf())
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
        ModelsAction::Import { folder } => {
            let model = registry()?.import(&folder)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&model)?);
            } else {
                println!("imported {} as {}", model.path.display(), model.id);
            }
        }
    }
    Ok(())
}
