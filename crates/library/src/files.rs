//! The library's durable writes: `selfdiffusion-files` with the library's error context.

use std::path::Path;

use selfdiffusion_files::Access;
pub(crate) use selfdiffusion_files::{temp_path_for, TEMP_PREFIX};

use crate::error::{Error, Result};

/// Writes `bytes` to `path` so that the file either appears complete and durable or not at all.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    selfdiffusion_files::write_atomic(path, bytes, Access::Default)
        .map_err(|e| Error::io("write", path, e))
}

/// Makes a rename or removal inside `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    selfdiffusion_files::sync_dir(dir).map_err(|e| Error::io("sync folder", dir, e))
}

/// Removes a file; a file that is already gone is not an error.
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    selfdiffusion_files::remove_if_exists(path).map_err(|e| Error::io("remove", path, e))
}
