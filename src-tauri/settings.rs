//! Persistent settings, kept with tauri-plugin-store in the app config dir.

use std::path::PathBuf;

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
