//! The jobs written down in an embedded SQLite file (`<data_dir>/jobs.sqlite3`), so a restart of
//! a one-box server loses nothing: each job's owner, the request as it was accepted, where it
//! is and how many images it has. Every change commits before the caller goes on (WAL,
//! `synchronous=FULL`); at start the server reads them back and queues again what had not
//! finished.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use selfdiffusion_protocol::{GenerateRequest, Status, UpscaleRequest};
use serde::{Deserialize, Serialize};

/// A store that cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[error("the job store {what}: {source}")]
pub struct StoreError {
    what: &'static str,
    #[source]
    source: rusqlite::Error,
}

pub(crate) fn failed(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError { what, source }
}

/// A request as the server accepted it (with the seed it chose), to be checked and run again
/// after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum StoredRequest {
    /// A `generate` body.
    Generate(Box<GenerateRequest>),
    /// An `upscale` body.
    Upscale(UpscaleRequest),
}

/// One job as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJob {
    /// Its id.
    pub id: String,
    /// The token subject of its owner.
    pub owner: String,
    /// The owner's user name, for logs.
    pub username: String,
    /// What it asked for.
    pub request: StoredRequest,
    /// Where it is.
    pub status: Status,
    /// How many images are written.
    pub images: usize,
    /// Why it failed.
    pub error: Option<String>,
    /// When it finished.
    pub finished_at: Option<SystemTime>,
    /// The `Idempotency-Key` it was created with: the same key from the same owner gets this
    /// job again.
    pub idempotency_key: Option<String>,
}

/// The job table, one connection behind a lock (writes are small and few per job).
pub struct JobStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    username    TEXT NOT NULL,
    request     TEXT NOT NULL,
    status      TEXT NOT NULL,
    images      INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER,
    idempotency_key TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_idempotency_key ON jobs (owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS api_keys (
    id         TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    username   TEXT NOT NULL,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
";

pub(crate) fn seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl JobStore {
    /// Opens (creating if needed) the store at `path`, private to the user.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(failed("cannot be opened"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "synchronous", "FULL"))
            .and_then(|_| conn.busy_timeout(Duration::from_secs(5)))
            .and_then(|_| conn.execute_batch(SCHEMA))
            .map_err(failed("cannot be prepared"))?;
        Ok(JobStore {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes down a new job.
    pub fn insert(&self, job: &StoredJob) -> Result<(), StoreError> {
        let request = serde_json::to_string(&job.request).expect("requests serialise");
        self.lock()
            .execute(
                "INSERT INTO jobs (id, owner, username, request, status, images, error, created_at,
                                   finished_at, idempotency_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    job.id,
                    job.owner,
                    job.username,
                    request,
                    job.status.name(),
                    job.images as i64,
                    job.error,
                    seconds(SystemTime::now()),
                    job.finished_at.map(seconds),
                    job.idempotency_key,
                ],
            )
            .map_err(failed("cannot record a job"))?;
        Ok(())
    }

    /// Records where job `id` is: its status, images written, error and (for a finished job)
    /// when it finished.
    pub fn update(
        &self,
        id: &str,
        status: Status,
        images: usize,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let finished = status.has_ended().then(|| seconds(SystemTime::now()));
        self.lock()
            .execute(
                "UPDATE jobs SET status = ?2, images = ?3, error = ?4, finished_at = ?5 WHERE id = ?1",
                params![id, status.name(), images as i64, error, finished],
            )
            .map_err(failed("cannot record a job's state"))?;
        Ok(())
    }

    /// Forgets jobs `ids`.
    pub fn remove(&self, ids: &[String]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(failed("cannot forget jobs"))?;
        for id in ids {
            tx.execute("DELETE FROM jobs WHERE id = ?1", [id])
                .map_err(failed("cannot forget jobs"))?;
        }
        tx.commit().map_err(failed("cannot forget jobs"))
    }

    /// The job `owner` created with `Idempotency-Key` `key`, if any.
    pub fn job_for_key(&self, owner: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.lock()
            .query_row(
                "SELECT id FROM jobs WHERE owner = ?1 AND idempotency_key = ?2",
                [owner, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(failed("cannot be read"))
    }

    /// Every job, oldest first. A row that cannot be read back (a request of an older format)
    /// comes back failed, with the reason.
    pub fn all(&self) -> Result<Vec<StoredJob>, StoreError> {
        let conn = self.lock();
        let mut query = conn
            .prepare(
                "SELECT id, owner, username, request, status, images, error, finished_at, idempotency_key
                 FROM jobs ORDER BY created_at, rowid",
            )
            .map_err(failed("cannot be read"))?;
        let rows = query
            .query_map([], row)
            .map_err(failed("cannot be read"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed("cannot be read"));
        rows
    }
}

/// One row; a request that does not parse becomes a failed job saying so.
fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredJob> {
    let text: String = r.get(3)?;
    let status: String = r.get(4)?;
    let mut error: Option<String> = r.get(6)?;
    let mut status = Status::from_name(&status).unwrap_or(Status::Failed);
    let request = match serde_json::from_str(&text) {
        Ok(request) => request,
        Err(e) => {
            status = Status::Failed;
            error = Some(format!("the stored request cannot be read: {e}"));
            StoredRequest::Generate(Box::default())
        }
    };
    let finished_at: Option<i64> = r.get(7)?;
    Ok(StoredJob {
        id: r.get(0)?,
        owner: r.get(1)?,
        username: r.get(2)?,
        request,
        status,
        images: r.get::<_, i64>(5)?.max(0) as usize,
        error,
        finished_at: finished_at.map(|s| UNIX_EPOCH + Duration::from_secs(s.max(0) as u64)),
        idempotency_key: r.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str) -> StoredJob {
        StoredJob {
            id: id.into(),
            owner: "sub-1".into(),
            username: "ana".into(),
            request: StoredRequest::Generate(Box::new(GenerateRequest {
                prompt: "a fox".into(),
                samples: 2,
                seed: Some(9),
                ..GenerateRequest::default()
            })),
            status: Status::Queued,
            images: 0,
            error: None,
            finished_at: None,
            idempotency_key: Some(format!("key-{id}")),
        }
    }

    #[test]
    fn jobs_survive_reopening_with_their_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.sqlite3");
        {
            let store = JobStore::open(&path).unwrap();
            store.insert(&job("a")).unwrap();
            store.insert(&job("b")).unwrap();
            store.insert(&job("c")).unwrap();
            store.update("a", Status::Succeeded, 2, None).unwrap();
            store.update("b", Status::Running, 1, None).unwrap();
            store.remove(&["c".into()]).unwrap();
        }
        let store = JobStore::open(&path).unwrap();
        let all = store.all().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].id.as_str(), all[0].status, all[0].images),
            ("a", Status::Succeeded, 2)
        );
        assert!(all[0].finished_at.is_some());
        assert_eq!(
            (all[1].id.as_str(), all[1].status, all[1].images),
            ("b", Status::Running, 1)
        );
        assert_eq!(all[1].request, job("b").request);
        assert!(all.iter().all(|j| j.id != "c"), "c was removed");
        assert_eq!(
            store.job_for_key("sub-1", "key-b").unwrap().as_deref(),
            Some("b")
        );
        assert_eq!(store.job_for_key("sub-2", "key-b").unwrap(), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the store is private to the user");
        }
    }

    #[test]
    fn an_unreadable_request_comes_back_failed_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(&dir.path().join("jobs.sqlite3")).unwrap();
        store.insert(&job("a")).unwrap();
        store
            .lock()
            .execute("UPDATE jobs SET request = '{\"kind\":\"paint\"}'", [])
            .unwrap();
        let job = store.all().unwrap().remove(0);
        assert_eq!(job.status, Status::Failed);
        assert!(job.error.unwrap().contains("cannot be read"));
    }
}
