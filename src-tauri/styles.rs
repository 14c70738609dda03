//! Styles in the app: the built-in catalog and the user's `styles.json`, read once and again only
//! when that file changes, so previewing the prompt on every keystroke reads nothing from disk.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use selfdiffusion_styles::{Style, StyleProblem};
use serde::Serialize;
use tauri::{AppHandle, Manager, State};

use crate::error::{blocking, CmdResult, CommandError};

/// Built-in and user styles, with the user entries that were skipped.
#[derive(Debug, Clone, Serialize)]
pub struct StyleList {
    /// Every usable style, built-in ones first.
    pub styles: Vec<Style>,
    /// The user entries that were skipped, and why.
    pub problems: Vec<StyleProblem>,
}

/// The styles as last read, with the user file's modification time then.
#[derive(Default)]
pub struct Styles {
    cache: Mutex<Option<(Option<SystemTime>, Arc<StyleList>)>>,
}

fn user_styles_file(app: &AppHandle) -> Option<PathBuf> {
    app.path()
        .app_config_dir()
        .ok()
        .map(|d| d.join("styles.json"))
}

fn read_styles(file: Option<&PathBuf>) -> StyleList {
    let mut styles = selfdiffusion_styles::builtin();
    let mut problems = Vec::new();
    if let Some(file) = file {
        match selfdiffusion_styles::load_user_styles(file) {
            Ok(user) => {
                styles.extend(user.styles);
                problems = user.problems;
            }
            Err(e) => problems.push(StyleProblem {
                name: file.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }
    StyleList { styles, problems }
}

impl Styles {
    /// The current styles: cached, read again when the user file changed.
    pub fn get(&self, app: &AppHandle) -> Arc<StyleList> {
        let file = user_styles_file(app);
        let modified = file
            .as_ref()
            .and_then(|f| std::fs::metadata(f).ok())
            .and_then(|m| m.modified().ok());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((when, list)) = cache.as_ref() {
            if *when == modified {
                return list.clone();
            }
        }
        let list = Arc::new(read_styles(file.as_ref()));
        *cache = Some((modified, list.clone()));
        list
    }

    /// The styles named `names`, in order; an unknown name is an error that says which.
    pub fn resolve(&self, app: &AppHandle, names: &[String]) -> CmdResult<Vec<Style>> {
        let list = self.get(app);
        names
            .iter()
            .map(|n| {
                selfdiffusion_styles::find(&list.styles, n)
                    .cloned()
                    .ok_or_else(|| CommandError::invalid(format!("unknown style {n:?}")))
            })
            .collect()
    }
}

/// Built-in and user styles, with the user entries that were skipped.
#[tauri::command]
pub async fn list_styles(app: AppHandle) -> CmdResult<StyleList> {
    blocking(move || Ok(app.state::<Styles>().get(&app).as_ref().clone())).await
}

/// The prompt and negative prompt that would be sent with these styles.
#[tauri::command]
pub async fn preview_prompt(
    app: AppHandle,
    store: State<'_, Styles>,
    prompt: String,
    negative: String,
    styles: Vec<String>,
) -> CmdResult<(String, String)> {
    let list = store.get(&app);
    let chosen: Vec<&Style> = styles
        .iter()
        .filter_map(|n| selfdiffusion_styles::find(&list.styles, n))
        .collect();
    Ok(selfdiffusion_styles::apply(&prompt, &negative, &chosen))
}
