//! The shell's state: the open library and the cancel flags of a running export and upscale.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfdiffusion_library::Library;
use tauri::{AppHandle, Manager};

use crate::cancel::CancelSlot;
use crate::error::{CmdResult, CommandError};

/// State shared by all commands.
pub struct AppState {
    library: Mutex<CmdResult<Arc<Library>>>,
    /// Set to cancel the export in progress.
    pub export_cancel: CancelSlot,
    /// Set to cancel the upscale in progress.
    pub upscale_cancel: CancelSlot,
}

impl AppState {
    /// Opens the library from the environment override, the setting, or the default folder.
    pub fn open(app: &AppHandle) -> Self {
        let setting = crate::settings::library_folder(app);
        let library = match selfdiffusion_library::resolve_root(setting.as_deref()) {
            Some(root) => open_library(app, &root),
            None => Err(CommandError::failed(
                "no data folder is known for this system; choose a library folder in Settings",
            )),
        };
        if let Err(e) = &library {
            tracing::error!(error = %e.message, "library unavailable");
        }
        AppState {
            library: Mutex::new(library),
            export_cancel: CancelSlot::default(),
            upscale_cancel: CancelSlot::default(),
        }
    }

    /// The open library, or why there is none.
    pub fn library(&self) -> CmdResult<Arc<Library>> {
        self.library
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Switches to the library at `root`; the old one stays open if the new one fails.
    pub fn switch(&self, app: &AppHandle, root: &Path) -> CmdResult<Arc<Library>> {
        let library = open_library(app, root)?;
        *self.library.lock().unwrap_or_else(|e| e.into_inner()) = Ok(library.clone());
        Ok(library)
    }
}

/// Opens a library and lets the WebView load its images through the asset protocol.
fn open_library(app: &AppHandle, root: &Path) -> CmdResult<Arc<Library>> {
    let library = Library::open(PathBuf::from(root)).map_err(|e| {
        CommandError::failed(format!(
            "cannot open the library at {}: {e}",
            root.display()
        ))
    })?;
    app.asset_protocol_scope()
        .allow_directory(library.root(), true)
        .map_err(|e| {
            CommandError::failed(format!("cannot serve images from {}: {e}", root.display()))
        })?;
    tracing::info!(root = %root.display(), "library open");
    let library = Arc::new(library);
    prune_inputs(library.clone());
    Ok(library)
}

/// How long a kept input no image names may wait for the run it was kept for.
const UNNAMED_INPUT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Removes, in the background, the kept inputs no image names any more (their images deleted,
/// or the run never made).
fn prune_inputs(library: Arc<Library>) {
    std::thread::spawn(move || match library.prune_inputs(UNNAMED_INPUT_MAX_AGE) {
        Ok(pruned) if pruned.files > 0 => {
            tracing::info!(
                files = pruned.files,
                bytes = pruned.bytes,
                "unused inputs removed"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot prune the kept inputs"),
    });
}
