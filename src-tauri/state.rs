//! The shell's state: the open library and the cancel flag of a running export.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use selfdiffusion_library::Library;
use tauri::{AppHandle, Manager};

use crate::cancel::CancelSlot;
use crate::error::{CmdResult, CommandError};

/// State shared by all commands.
pub struct AppState {
    library: Mutex<CmdResult<Arc<Library>>>,
    /// Set to cancel the export in progress.
    pub export_cancel: CancelSlot,
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
    Ok(Arc::new(library))
}
