//! Durable file writes: the one place where SelfDiffusion writes a file so that it appears
//! complete and durable, or not at all (temp file beside it → fsync → rename → fsync of the
//! folder). Files holding secrets are written readable by their owner only.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Prefix of temporary files; a crash can leave them behind and they are never real content.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Who may read a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The process's default permissions (umask).
    Default,
    /// Only the owner (mode 0600 on Unix): secrets, session files, keys.
    Private,
}

/// Writes `bytes` to `path` (creating its folder) so that the file either appears complete and
/// durable or not at all. The temporary file is [`temp_path_for`]`(path)`, removed on failure.
pub fn write_atomic(path: &Path, bytes: &[u8], access: Access) -> io::Result<()> {
    let dir = parent(path);
    fs::create_dir_all(dir)?;
    let tmp = temp_path_for(path);
    let written = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if access == Access::Private {
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Makes a rename or removal inside `dir` durable (a no-op where folders cannot be synced).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The temporary name [`write_atomic`] uses for `path`: beside it, so recovery can find it.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!("{TEMP_PREFIX}{name}"))
}

/// Removes a file; a file that is already gone is not an error.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The folder `path` is in (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_files_and_leave_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a/b/c.json");
        write_atomic(&file, b"one", Access::Default).unwrap();
        write_atomic(&file, b"two", Access::Default).unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"two");
        assert!(!temp_path_for(&file).exists());
        assert_eq!(
            temp_path_for(&file).file_name().unwrap(),
            ".tmp-c.json",
            "the temp file sits beside the target"
        );
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        write_atomic(&file, b"token", Access::Private).unwrap();
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("is-a-folder");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"x").unwrap();
        assert!(write_atomic(&target, b"bytes", Access::Default).is_err());
        assert!(!temp_path_for(&target).exists());
        remove_if_exists(&dir.path().join("never-there")).unwrap();
    }
}
