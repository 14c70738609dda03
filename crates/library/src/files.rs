//! Durable file writes: temp file, fsync, rename, fsync of the folder.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Prefix of temporary files; a crash can leave them behind and they are never library content.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// Writes `bytes` to `path` so that the file either appears complete and durable or not at all.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("library paths have a parent");
    fs::create_dir_all(dir).ctx("create folder", dir)?;
    let tmp = temp_path_for(path);
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(crate::Error::io("write", path, e));
    }
    sync_dir(dir)
}

/// Makes a rename or removal inside `dir` durable (a no-op where folders cannot be synced).
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("sync folder", dir)?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The temporary name `write_atomic` uses for `path`: beside it, so recovery can find it.
pub(crate) fn temp_path_for(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!("{TEMP_PREFIX}{name}"))
}

/// Removes a file; a file that is already gone is not an error.
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(crate::Error::io("remove", path, e))
        }
        _ => Ok(()),
    }
}
