//! Native file dialogs (rfd). End-to-end tests cannot click a native dialog, so environment
//! variables answer in its place: `SELFDIFFUSION_E2E_OPEN_PATHS` (a path list, as `PATH` is
//! written), `SELFDIFFUSION_E2E_SAVE_PATH`, `SELFDIFFUSION_E2E_CHECKPOINT_PATH`,
//! `SELFDIFFUSION_E2E_LORA_PATH` and `SELFDIFFUSION_E2E_UPSCALER_PATH`. Nothing else reads them.

use std::path::PathBuf;

const OPEN_OVERRIDE: &str = "SELFDIFFUSION_E2E_OPEN_PATHS";
const SAVE_OVERRIDE: &str = "SELFDIFFUSION_E2E_SAVE_PATH";

/// What to pick for an import.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PickKind {
    /// Image files or zip archives.
    Files,
    /// One folder.
    Folder,
}

/// Asks for files or a folder to import; empty when the user cancels.
pub fn pick_import(kind: PickKind) -> Vec<PathBuf> {
    if let Some(paths) = std::env::var_os(OPEN_OVERRIDE) {
        return std::env::split_paths(&paths).collect();
    }
    let dialog = rfd::FileDialog::new().set_title("Import images");
    match kind {
        PickKind::Files => dialog
            .add_filter(
                "Images and archives",
                &["png", "jpg", "jpeg", "webp", "zip"],
            )
            .pick_files()
            .unwrap_or_default(),
        PickKind::Folder => dialog.pick_folder().into_iter().collect(),
    }
}

/// Asks where to save an export; `None` when the user cancels.
pub fn pick_export_path(suggested_name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(SAVE_OVERRIDE) {
        return Some(PathBuf::from(path));
    }
    rfd::FileDialog::new()
        .set_title("Export project")
        .set_file_name(suggested_name)
        .add_filter("Zip archive", &["zip"])
        .save_file()
}

/// Which weights file to pick.
#[derive(Debug, Clone, Copy)]
pub enum WeightsKind {
    /// A single-file model checkpoint.
    Checkpoint,
    /// A LoRA.
    Lora,
    /// An ESRGAN upscaler (`.safetensors` or a PyTorch `.pth`).
    Upscaler,
}

/// Asks for a `.safetensors` weights file; `None` when the user cancels.
pub fn pick_weights(kind: WeightsKind) -> Option<PathBuf> {
    let (env, title) = match kind {
        WeightsKind::Checkpoint => (
            "SELFDIFFUSION_E2E_CHECKPOINT_PATH",
            "Import a checkpoint (.safetensors)",
        ),
        WeightsKind::Lora => (
            "SELFDIFFUSION_E2E_LORA_PATH",
            "Import a LoRA (.safetensors)",
        ),
        WeightsKind::Upscaler => (
            "SELFDIFFUSION_E2E_UPSCALER_PATH",
            "Choose an ESRGAN upscaler (.safetensors or .pth)",
        ),
    };
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    let extensions: &[&str] = match kind {
        WeightsKind::Upscaler => &["safetensors", "pth"],
        _ => &["safetensors"],
    };
    rfd::FileDialog::new()
        .set_title(title)
        .add_filter("Weights", extensions)
        .pick_file()
}

/// Asks for a library folder; `None` when the user cancels.
pub fn pick_folder(title: &str) -> Option<PathBuf> {
    rfd::FileDialog::new().set_title(title).pick_folder()
}
