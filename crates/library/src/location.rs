//! Where the library lives: `SELFDIFFUSION_LIBRARY`, else the app setting, else the OS data dir.

use std::path::{Path, PathBuf};

/// Environment variable that overrides the library folder (tests, portable installs).
pub const LIBRARY_ENV: &str = "SELFDIFFUSION_LIBRARY";

/// The library folder to use: the environment override wins, then the user's setting, then
/// the default under the OS data dir. `None` only when the OS reports no data dir at all.
pub fn resolve_root(setting: Option<&Path>) -> Option<PathBuf> {
    std::env::var_os(LIBRARY_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| setting.map(Path::to_path_buf))
        .or_else(default_root)
}

/// The default library folder: `<data dir>/SelfDiffusion/library`.
pub fn default_root() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("SelfDiffusion").join("library"))
}
