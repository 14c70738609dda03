//! `selfdiffusion-cli`: the project library, local generation and a cloud account's API keys
//! from the command line.

mod generate;
mod keys;
mod models;
mod upscale;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use selfdiffusion_library::{ImportOptions, Library, OnDuplicate, Project};
use serde::Serialize;

/// Manage the SelfDiffusion image library and generate images locally.
#[derive(Parser)]
#[command(name = "selfdiffusion-cli", version, about)]
struct Cli {
    /// Library folder (default: $SELFDIFFUSION_LIBRARY, else the OS data dir).
    #[arg(long, global = true, value_name = "DIR")]
    library: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate images locally from a prompt.
    Generate(Box<generate::GenerateArgs>),
    /// Make an image 2 or 4 times larger (ESRGAN, or Lanczos without a model).
    Upscale(upscale::UpscaleArgs),
    /// List, download, verify or import models.
    Models {
        #[command(subcommand)]
        action: models::ModelsAction,
    },
    /// List, import or remove LoRAs (used in prompts as `<lora:name:0.8>` or with --lora).
    Loras {
        #[command(subcommand)]
        action: models::LorasAction,
    },
    /// Make, list or revoke the API keys of a cloud account (for the server's /v1 API).
    Keys(keys::KeysArgs),
    #[command(flatten)]
    Library(LibraryCommand),
}

#[derive(Subcommand)]
enum LibraryCommand {
    /// List, create, rename or delete projects.
    Projects {
        #[command(subcommand)]
        action: ProjectsAction,
    },
    /// Import image files, folders or zip archives into a project.
    Import {
        /// Project id or name.
        #[arg(long)]
        project: String,
        /// What to do with an image whose name or content is already in the project.
        #[arg(long, value_enum, default_value_t = Duplicates::Skip)]
        on_duplicate: Duplicates,
        /// Files, folders and .zip archives.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Export a project (or some of its images) to a zip with a manifest.
    Export {
        /// Project id or name.
        #[arg(long)]
        project: String,
        /// Only these image ids (comma-separated).
        #[arg(long, value_delimiter = ',')]
        images: Option<Vec<i64>>,
        /// The zip file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check that every row has its file and every file its row; exit status 1 if not.
    Verify,
    /// Fix what is safe to fix (re-index orphan images, rebuild thumbnails).
    Repair,
}

#[derive(Subcommand)]
enum ProjectsAction {
    /// List projects with their figures.
    List,
    /// Show one project.
    Info {
        /// Project id or name.
        project: String,
    },
    /// Create a project.
    Create {
        /// Name (1–100 characters, unique without case).
        name: String,
        /// Optional description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Rename and/or re-describe a project.
    Rename {
        /// Project id or name.
        project: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a project with all its images.
    Delete {
        /// Project id or name.
        project: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Duplicates {
    Skip,
    KeepBoth,
    Replace,
}

impl From<Duplicates> for OnDuplicate {
    fn from(d: Duplicates) -> Self {
        match d {
            Duplicates::Skip => OnDuplicate::Skip,
            Duplicates::KeepBoth => OnDuplicate::KeepBoth,
            Duplicates::Replace => OnDuplicate::Replace,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A project given as an id or a name.
fn find_project(lib: &Library, key: &str) -> Result<Project> {
    if let Ok(id) = key.parse::<i64>() {
        if let Ok(p) = lib.project(id) {
            return Ok(p);
        }
    }
    Ok(lib.project_by_name(key)?)
}

fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) -> Result<()> {
    let text = if json {
        serde_json::to_string_pretty(value)?
    } else {
        human(value)
    };
    writeln!(std::io::stdout(), "{text}")?;
    Ok(())
}

fn progress_line(json: bool, label: &str, done: usize, total: usize) {
    if !json {
        eprint!("\r{label} {done}/{total}");
        if done == total {
            eprintln!();
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Generate(args) => {
            generate::run(*args, cli.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Upscale(args) => {
            upscale::run(args, cli.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Models { action } => {
            models::run(action, cli.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Loras { action } => {
            models::run_loras(action, cli.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(args) => {
            keys::run(args, cli.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Library(command) => run_library(command, cli.library.as_deref(), cli.json),
    }
}

fn run_library(
    command: LibraryCommand,
    library: Option<&std::path::Path>,
    json: bool,
) -> Result<ExitCode> {
    let root = selfdiffusion_library::resolve_root(library)
        .context("no library folder: pass --library DIR or set SELFDIFFUSION_LIBRARY")?;
    let lib = Library::open(&root)
        .with_context(|| format!("cannot open the library at {}", root.display()))?;
    let no_cancel = AtomicBool::new(false);
    match command {
        LibraryCommand::Projects { action } => match action {
            ProjectsAction::List => print(json, &lib.list_projects()?, |list| {
                list.iter()
                    .map(|p| {
                        format!(
                            "{:>4}  {}  ({} images, {} bytes)",
                            p.project.id, p.project.name, p.image_count, p.bytes
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?,
            ProjectsAction::Info { project } => {
                let p = find_project(&lib, &project)?;
                print(json, &lib.project_summary(p.id)?, |s| {
                    format!(
                        "{} (id {})\n{}\n{} images ({} generated), {} bytes",
                        s.project.name,
                        s.project.id,
                        s.project.description,
                        s.image_count,
                        s.generated_count,
                        s.bytes
                    )
                })?
            }
            ProjectsAction::Create { name, description } => print(
                json,
                &lib.create_project(&name, description.as_deref())?,
                |p| format!("created project {} (id {})", p.name, p.id),
            )?,
            ProjectsAction::Rename {
                project,
                name,
                description,
            } => {
                if name.is_none() && description.is_none() {
                    bail!("nothing to change: give --name and/or --description");
                }
                let p = find_project(&lib, &project)?;
                print(
                    json,
                    &lib.update_project(p.id, name.as_deref(), description.as_deref())?,
                    |p| format!("project {} is now \"{}\"", p.id, p.name),
                )?
            }
            ProjectsAction::Delete { project } => {
                let p = find_project(&lib, &project)?;
                lib.delete_project(p.id)?;
                print(json, &p, |p| {
                    format!("deleted project {} (id {})", p.name, p.id)
                })?
            }
        },
        LibraryCommand::Import {
            project,
            on_duplicate,
            paths,
        } => {
            let p = find_project(&lib, &project)?;
            let options = ImportOptions {
                on_duplicate: on_duplicate.into(),
            };
            let report = lib.import_paths(p.id, &paths, options, &no_cancel, &mut |pr| {
                progress_line(json, "importing", pr.done, pr.total)
            })?;
            print(json, &report, |r| {
                let mut lines = vec![format!(
                    "imported {}, skipped {} duplicate(s), replaced {}, rejected {}",
                    r.imported.len(),
                    r.skipped_duplicates.len(),
                    r.replaced.len(),
                    r.rejected.len()
                )];
                lines.extend(
                    r.rejected
                        .iter()
                        .map(|x| format!("  rejected {}: {}", x.name, x.reason)),
                );
                lines.join("\n")
            })?
        }
        LibraryCommand::Export {
            project,
            images,
            out,
        } => {
            let p = find_project(&lib, &project)?;
            let report = lib.export_zip(p.id, images.as_deref(), &out, &no_cancel, &mut |pr| {
                progress_line(json, "exporting", pr.done, pr.total)
            })?;
            print(json, &report, |r| {
                format!(
                    "exported {} image(s) to {} ({} bytes)",
                    r.images,
                    r.path.display(),
                    r.bytes
                )
            })?
        }
        LibraryCommand::Verify => {
            let report = lib.verify()?;
            print(json, &report, |r| {
                if r.is_clean() {
                    format!(
                        "library is consistent ({} images checked)",
                        r.images_checked
                    )
                } else {
                    format!(
                        "{} missing file(s), {} missing thumbnail(s), {} orphan file(s), {} changed file(s); run repair",
                        r.missing_files.len(),
                        r.missing_thumbnails.len(),
                        r.orphan_files.len(),
                        r.hash_mismatches.len()
                    )
                }
            })?;
            if !report.is_clean() {
                return Ok(ExitCode::from(1));
            }
        }
        LibraryCommand::Repair => {
            let report = lib.repair()?;
            print(json, &report, |r| {
                format!(
                    "re-indexed {}, rebuilt {} thumbnail(s), removed {} leftover file(s); {}",
                    r.reindexed.len(),
                    r.thumbnails_rebuilt,
                    r.removed.len(),
                    if r.remaining.is_clean() {
                        "library is consistent"
                    } else {
                        "some problems need a person (see verify)"
                    }
                )
            })?
        }
    }
    Ok(ExitCode::SUCCESS)
}
