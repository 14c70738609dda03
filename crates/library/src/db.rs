//! Opening the SQLite database and applying versioned migrations.

use std::path::Path;

use rusqlite::Connection;

use crate::error::{Error, Result};

/// Schema migrations; migration `i` brings the database to version `i + 1`.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE projects (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    name_key    TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE images (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id      INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    file            TEXT NOT NULL UNIQUE,
    thumb           TEXT NOT NULL UNIQUE,
    original_name   TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    bytes           INTEGER NOT NULL,
    width           INTEGER NOT NULL,
    height          INTEGER NOT NULL,
    format          TEXT NOT NULL,
    origin          TEXT NOT NULL CHECK (origin IN ('generated', 'imported')),
    favorite        INTEGER NOT NULL DEFAULT 0,
    prompt          TEXT NOT NULL DEFAULT '',
    negative_prompt TEXT NOT NULL DEFAULT '',
    recipe          TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX images_by_project ON images(project_id, id);
CREATE INDEX images_by_hash ON images(project_id, sha256);
-- Files that must not outlive the operation that wrote or released them unless an image row
-- claims them; cleared on open (see `Library::recover`).
CREATE TABLE pending_files (path TEXT PRIMARY KEY);
"#];

/// Opens (creating if needed) the database at `path` with WAL, foreign keys and full sync.
pub(crate) fn open(path: &Path) -> Result<Connection> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    migrate(&mut conn)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(Error::NewerSchema {
            found: version,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "library database migrated");
    }
    Ok(())
}
