//! Persistent settings, kept with tauri-plugin-store in the app config dir.

use std::path::PathBuf;

use selfdiffusion_cloud::CloudSettings;
use tauri::AppHandle;
use tauri_plugin_store::StoreExt;

const STORE_FILE: &str = "settings.json";
const LIBRARY_FOLDER: &str = "library_folder";

/// The library folder the user chose, if any.
pub fn library_folder(app: &AppHandle) -> Option<PathBuf> {
    let store = app.store(STORE_FILE).ok()?;
    store
        .get(LIBRARY_FOLDER)?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// Remembers the library folder the user chose.
pub fn set_library_folder(app: &AppHandle, folder: &std::path::Path) -> anyhow::Result<()> {
    let store = app.store(STORE_FILE)?;
    store.set(LIBRARY_FOLDER, folder.to_string_lossy().into_owned());
    store.save()?;
    Ok(())
}

const UPSCALER: &str = "upscaler";

/// The ESRGAN upscaler file the user chose, if any (else images are upscaled by Lanczos).
pub fn upscaler(app: &AppHandle) -> Option<PathBuf> {
    let store = app.store(STORE_FILE).ok()?;
    store
        .get(UPSCALER)?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// Remembers the ESRGAN upscaler file, or forgets it (`None`: Lanczos).
pub fn set_upscaler(app: &AppHandle, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let store = app.store(STORE_FILE)?;
    match file {
        Some(file) => store.set(UPSCALER, file.to_string_lossy().into_owned()),
        None => {
            store.delete(UPSCALER);
        }
    }
    store.save()?;
    Ok(())
}

const CLOUD: &str = "cloud";

/// The cloud settings: saved ones, with the environment over them.
pub fn cloud(app: &AppHandle) -> CloudSettings {
    let saved: CloudSettings = app
        .store(STORE_FILE)
        .ok()
        .and_then(|s| s.get(CLOUD))
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    saved.with_env()
}

/// Saves the cloud settings.
pub fn set_cloud(app: &AppHandle, settings: &CloudSettings) -> anyhow::Result<()> {
    let store = app.store(STORE_FILE)?;
    store.set(CLOUD, serde_json::to_value(settings)?);
    store.save()?;
    Ok(())
}
