//! Library commands: thin adapters from the WebView to the project library. Errors reach the UI
//! as `{kind, message}` ([`CommandError`]).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use selfdiffusion_library::{
    ExportReport, ImageDetail, ImagePage, ImageQuery, ImportOptions, ImportReport, Library,
    Project, ProjectSummary, RepairReport, VerifyReport,
};
use serde::Serialize;
use tauri::{AppHandle, Emitter, State};

use crate::dialogs::{self, PickKind};
use crate::error::{blocking, CmdResult, CommandError};
use crate::events;
use crate::state::AppState;

/// Name of the project a library without projects starts with.
const DEFAULT_PROJECT: &str = "My images";

/// Runs library work off the UI thread.
async fn with_library<T: Send + 'static>(
    state: &State<'_, AppState>,
    work: impl FnOnce(Arc<Library>) -> selfdiffusion_library::Result<T> + Send + 'static,
) -> CmdResult<T> {
    let library = state.library()?;
    blocking(move || work(library).map_err(CommandError::from)).await
}

/// Where the library is.
#[derive(Serialize)]
pub struct LibraryInfo {
    /// The open library's folder (absolute).
    root: Option<PathBuf>,
    /// Why no library is open.
    error: Option<String>,
    /// The default folder.
    default_root: Option<PathBuf>,
    /// Whether `SELFDIFFUSION_LIBRARY` decides the folder.
    env_override: bool,
}

/// Where the library is, whether the environment chose it, and why it is unavailable.
#[tauri::command]
pub fn library_info(state: State<'_, AppState>) -> LibraryInfo {
    let (root, error) = match state.library() {
        Ok(lib) => (Some(lib.root().to_path_buf()), None),
        Err(e) => (None, Some(e.message)),
    };
    LibraryInfo {
        root,
        error,
        default_root: selfdiffusion_library::default_root(),
        env_override: std::env::var_os(selfdiffusion_library::LIBRARY_ENV).is_some(),
    }
}

/// Lets the user pick another library folder, opens it and remembers it.
#[tauri::command]
pub async fn set_library_folder(
    app: AppHandle,
    state: State<'_, AppState>,
) -> CmdResult<Option<PathBuf>> {
    let Some(folder) =
        tauri::async_runtime::spawn_blocking(|| dialogs::pick_folder("Choose the library folder"))
            .await
            .map_err(CommandError::failed)?
    else {
        return Ok(None);
    };
    let library = state.switch(&app, &folder)?;
    crate::settings::set_library_folder(&app, &folder).map_err(CommandError::failed)?;
    Ok(Some(library.root().to_path_buf()))
}

/// The project the app opens on: the one updated last, or a new "My images" when there is none.
#[tauri::command]
pub async fn default_project(state: State<'_, AppState>) -> CmdResult<Project> {
    with_library(&state, |lib| lib.default_project(DEFAULT_PROJECT)).await
}

/// Every project with its counts and cover.
#[tauri::command]
pub async fn list_projects(state: State<'_, AppState>) -> CmdResult<Vec<ProjectSummary>> {
    with_library(&state, |lib| lib.list_projects()).await
}

/// Creates a project (names are unique, case-insensitively).
#[tauri::command]
pub async fn create_project(
    state: State<'_, AppState>,
    name: String,
    description: Option<String>,
) -> CmdResult<Project> {
    with_library(&state, move |lib| {
        lib.create_project(&name, description.as_deref())
    })
    .await
}

/// Renames a project or changes its description.
#[tauri::command]
pub async fn update_project(
    state: State<'_, AppState>,
    id: i64,
    name: Option<String>,
    description: Option<String>,
) -> CmdResult<Project> {
    with_library(&state, move |lib| {
        lib.update_project(id, name.as_deref(), description.as_deref())
    })
    .await
}

/// Deletes a project and its files (refused while one of its jobs runs).
#[tauri::command]
pub async fn delete_project(state: State<'_, AppState>, id: i64) -> CmdResult<()> {
    with_library(&state, move |lib| lib.delete_project(id)).await
}

/// A page of a project's images (search, favourites, cursor).
#[tauri::command]
pub async fn list_images(
    state: State<'_, AppState>,
    project_id: i64,
    query: ImageQuery,
) -> CmdResult<ImagePage> {
    with_library(&state, move |lib| lib.list_images(project_id, &query)).await
}

/// One image with its recipe.
#[tauri::command]
pub async fn get_image(state: State<'_, AppState>, id: i64) -> CmdResult<ImageDetail> {
    with_library(&state, move |lib| lib.image(id)).await
}

/// Flips an image's favourite mark; returns the new value.
#[tauri::command]
pub async fn toggle_favorite(state: State<'_, AppState>, id: i64) -> CmdResult<bool> {
    with_library(&state, move |lib| lib.toggle_favorite(id)).await
}

/// Deletes images and their files; returns how many went.
#[tauri::command]
pub async fn delete_images(state: State<'_, AppState>, ids: Vec<i64>) -> CmdResult<usize> {
    with_library(&state, move |lib| lib.delete_images(&ids)).await
}

/// Moves images to another project; returns their new ids.
#[tauri::command]
pub async fn move_images(
    state: State<'_, AppState>,
    ids: Vec<i64>,
    target_project: i64,
) -> CmdResult<Vec<i64>> {
    with_library(&state, move |lib| lib.move_images(&ids, target_project)).await
}

/// Opens the native picker for files or a folder; empty when cancelled.
#[tauri::command]
pub async fn pick_import_paths(kind: PickKind) -> CmdResult<Vec<PathBuf>> {
    tauri::async_runtime::spawn_blocking(move || dialogs::pick_import(kind))
        .await
        .map_err(CommandError::failed)
}

/// Imports paths (from the picker or a drop) into a project, emitting `import-progress`.
#[tauri::command]
pub async fn import_paths(
    app: AppHandle,
    state: State<'_, AppState>,
    project_id: i64,
    paths: Vec<PathBuf>,
    options: ImportOptions,
) -> CmdResult<ImportReport> {
    with_library(&state, move |lib| {
        lib.import_paths(
            project_id,
            &paths,
            options,
            &AtomicBool::new(false),
            &mut |p| {
                let _ = app.emit(events::IMPORT_PROGRESS, p);
            },
        )
    })
    .await
}

/// Asks where to save, then exports a project or a selection, emitting `export-progress`.
/// `None` when the user cancelled the dialog.
#[tauri::command]
pub async fn export_zip(
    app: AppHandle,
    state: State<'_, AppState>,
    project_id: i64,
    image_ids: Option<Vec<i64>>,
) -> CmdResult<Option<ExportReport>> {
    let project = state.library()?.project(project_id)?;
    let suggested = format!("{}.zip", project.name);
    let Some(dest) =
        tauri::async_runtime::spawn_blocking(move || dialogs::pick_export_path(&suggested))
            .await
            .map_err(CommandError::failed)?
    else {
        return Ok(None);
    };
    let cancel = state.export_cancel.begin();
    let result = with_library(&state, move |lib| {
        lib.export_zip(project_id, image_ids.as_deref(), &dest, &cancel, &mut |p| {
            let _ = app.emit(events::EXPORT_PROGRESS, p);
        })
    })
    .await;
    state.export_cancel.end();
    result.map(Some)
}

/// Cancels the export in progress, if any.
#[tauri::command]
pub fn cancel_export(state: State<'_, AppState>) {
    state.export_cancel.cancel();
}

/// Checks every record against its files.
#[tauri::command]
pub async fn verify_library(state: State<'_, AppState>) -> CmdResult<VerifyReport> {
    with_library(&state, |lib| lib.verify()).await
}

/// Re-indexes files without a record and rebuilds thumbnails.
#[tauri::command]
pub async fn repair_library(state: State<'_, AppState>) -> CmdResult<RepairReport> {
    with_library(&state, |lib| lib.repair()).await
}
