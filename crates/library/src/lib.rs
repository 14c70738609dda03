//! The SelfDiffusion project library: projects of images with their recipes, kept in an SQLite
//! database beside the image files, with import, zip export and consistency checks.
//!
//! Every write is crash-safe: a file is durable before the row that claims it commits, and files
//! written or released by an unfinished operation are listed in `pending_files` and cleaned up
//! the next time the library opens.

mod db;
mod error;
mod export;
mod files;
mod images;
mod import;
mod inputs;
mod jobs;
mod location;
mod projects;
mod thumbs;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};

pub use error::{Error, Result};
pub use export::{ExportProgress, ExportReport, Manifest, ManifestImage, ManifestProject};
pub use images::{ImageDetail, ImagePage, ImageQuery, ImageSummary, Origin, Pixels};
pub use import::{ImportOptions, ImportProgress, ImportReport, OnDuplicate, Rejected};
pub use inputs::PrunedInputs;
pub use jobs::JobGuard;
pub use location::{default_root, resolve_root, LIBRARY_ENV};
pub use projects::{Project, ProjectSummary, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS};
pub use thumbs::THUMB_MAX_SIDE;
pub use verify::{HashMismatch, MissingFile, RepairReport, VerifyReport};

/// File name of the database inside the library folder.
pub const DATABASE_FILE: &str = "library.sqlite3";

/// An open library folder. Cheap to share between threads; operations serialise on the database.
#[derive(Debug)]
pub struct Library {
    root: PathBuf,
    conn: Mutex<Connection>,
    jobs: jobs::JobRegistry,
}

impl Library {
    /// Opens the library at `root`, creating it if needed, and finishes or undoes whatever an
    /// interrupted operation left behind.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| Error::io("create library folder", &root, e))?;
        let conn = db::open(&root.join(DATABASE_FILE))?;
        let library = Library {
            root,
            conn: Mutex::new(conn),
            jobs: jobs::JobRegistry::default(),
        };
        library.recover()?;
        tracing::debug!(root = %library.root.display(), "library opened");
        Ok(library)
    }

    /// The library folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Absolute path of a library-relative path as stored in the database (`images/3/…`).
    pub fn path_of(&self, relative: &str) -> PathBuf {
        relative
            .split('/')
            .fold(self.root.clone(), |p, part| p.join(part))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `paths` are about to be written or released; until [`Self::settle`] runs,
    /// a crash leads [`Self::recover`] to delete any of them no image row claims.
    fn reserve(&self, conn: &Connection, paths: &[&str]) -> Result<()> {
        for path in paths {
            conn.execute(
                "INSERT OR IGNORE INTO pending_files(path) VALUES (?1)",
                [path],
            )?;
        }
        Ok(())
    }

    /// Forgets `paths` as pending (the caller's transaction decides when).
    fn settle(conn: &Connection, paths: &[&str]) -> Result<()> {
        for path in paths {
            conn.execute("DELETE FROM pending_files WHERE path = ?1", [path])?;
        }
        Ok(())
    }

    /// Removes pending files no row claims (and their temp files), then forgets them.
    fn release(&self, paths: &[&str]) -> Result<()> {
        let conn = self.conn();
        for path in paths {
            let claimed: Option<i64> = conn
                .query_row(
                    "SELECT id FROM images WHERE file = ?1 OR thumb = ?1",
                    [path],
                    |r| r.get(0),
                )
                .optional()?;
            if claimed.is_none() {
                let abs = self.path_of(path);
                files::remove_if_exists(&files::temp_path_for(&abs))?;
                files::remove_if_exists(&abs)?;
            }
        }
        Self::settle(&conn, paths)
    }

    /// Cleans up after operations a crash interrupted.
    fn recover(&self) -> Result<()> {
        let pending: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn.prepare("SELECT path FROM pending_files")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        if !pending.is_empty() {
            tracing::info!(
                count = pending.len(),
                "cleaning up after an interrupted operation"
            );
            let refs: Vec<&str> = pending.iter().map(String::as_str).collect();
            self.release(&refs)?;
        }
        Ok(())
    }

    /// Bumps a project's `updated_at`.
    fn touch_project(conn: &Connection, project_id: i64) -> Result<()> {
        conn.execute(
            "UPDATE projects SET updated_at = ?2 WHERE id = ?1",
            params![project_id, now_ms()],
        )?;
        Ok(())
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
