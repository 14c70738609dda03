//! The scale-out job table in PostgreSQL, which is also the queue: API nodes insert jobs and
//! read them; workers claim the oldest waiting job with `FOR UPDATE SKIP LOCKED`, hold it with a
//! lease renewed by heartbeats (which also carry the progress), and finish it only while the
//! lease is still theirs. A job whose lease ran out is claimed again, up to `max_attempts`
//! starts, then fails with the reason. A job queued (or put back) is announced with `NOTIFY`
//! so idle workers wake at once rather than at their next look. API keys live here too.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::StreamExt;
use selfdiffusion_protocol::{ApiKeyInfo, Status};
use tokio::sync::Notify;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::api_keys::{hash, new_key, PREFIX};
use crate::auth::Caller;
use crate::jobs::{CancelError, JobView, SubmitError};
use crate::store::{seconds, StoredRequest};

/// The database cannot be reached, or a statement failed.
#[derive(Debug, thiserror::Error)]
#[error("the job database {what}: {reason}")]
pub struct DbError {
    what: &'static str,
    reason: String,
}

fn failed<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> DbError {
    move |e| DbError {
        what,
        reason: e.to_string(),
    }
}

/// The TLS connector of `sslmode=require` URLs: the server's certificate checked against the
/// CAs in `ca_file` (PEM), or the public web roots.
pub fn tls(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, DbError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(file) => {
            let certs = CertificateDer::pem_file_iter(file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| DbError {
                    what: "CA file cannot be read",
                    reason: format!("{}: {e}", file.display()),
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(DbError {
                    what: "CA file cannot be used",
                    reason: format!("{} holds no certificate", file.display()),
                });
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(failed("TLS cannot be set up"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id               TEXT PRIMARY KEY,
    owner            TEXT NOT NULL,
    username         TEXT NOT NULL,
    request          TEXT NOT NULL,
    status           TEXT NOT NULL,
    images           INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    steps_done       INTEGER,
    steps_total      INTEGER,
    eta_ms           BIGINT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    worker           TEXT,
    lease_until      TIMESTAMPTZ,
    run_after        TIMESTAMPTZ,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    idempotency_key  TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner);
CREATE INDEX IF NOT EXISTS jobs_open ON jobs (created_at) WHERE status IN ('queued', 'running');
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_idempotency_key ON jobs (owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS api_keys (
    id         TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    username   TEXT NOT NULL,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE IF NOT EXISTS workers (
    name    TEXT PRIMARY KEY,
    seen_at TIMESTAMPTZ NOT NULL
);
";

/// Serialises schema set-up between processes starting at once.
const SCHEMA_LOCK: i64 = 0x5e1f_d1ff;

/// A job a worker claimed.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Its id.
    pub id: String,
    /// Its owner's token subject.
    pub owner: String,
    /// Its owner's name, for logs.
    pub username: String,
    /// What it asks for (or why the stored text cannot be read).
    pub request: Result<StoredRequest, String>,
    /// Which start this is (1 for the first): the claim's token; a finish or heartbeat of an
    /// older attempt changes nothing.
    pub attempt: i32,
    /// How long it waited since it was created.
    pub waited: Duration,
}

/// What a heartbeat learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// The lease is renewed.
    Held,
    /// The owner asked to cancel.
    CancelRequested,
    /// The lease is gone (it ran out and another worker took the job, or the job ended).
    Lost,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// All its images are stored.
    Succeeded(usize),
    /// Its owner cancelled it (the images stored so far stay).
    Cancelled(usize),
    /// It cannot succeed (a bad request, the engine refused it).
    Failed(String),
    /// Something outside the job failed (storage): start it again later, if attempts are left.
    Retry(String),
}

/// The channel a job made ready to run is announced on.
const JOBS_CHANNEL: &str = "selfdiffusion_jobs";

/// How long the listener waits before connecting again after its connection dropped.
const RELISTEN: Duration = Duration::from_secs(1);

/// The pool of connections to the job database (a dropped connection, as when PostgreSQL
/// restarts, is replaced on the next use).
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// How to open a connection of its own (the listener's).
    direct: Arc<Direct>,
}

/// What a connection outside the pool is opened with.
struct Direct {
    config: tokio_postgres::Config,
    /// The TLS of `sslmode=require` URLs; plain TCP when `None`.
    tls: Option<MakeRustlsConnect>,
}

/// One job row as the API shows it.
fn view_of(row: &tokio_postgres::Row) -> JobView {
    let status = Status::from_name(row.get::<_, &str>("status")).unwrap_or(Status::Failed);
    let steps = match (
        row.get::<_, Option<i32>>("steps_done"),
        row.get::<_, Option<i32>>("steps_total"),
    ) {
        (Some(done), Some(total)) if status == Status::Running => {
            Some((done.max(0) as usize, total.max(1) as usize))
        }
        _ => None,
    };
    JobView {
        status,
        progress: match status {
            Status::Running => Some(steps.map_or(0.0, |(d, t)| (d as f64 / t as f64).min(1.0))),
            Status::Succeeded => Some(1.0),
            _ => None,
        },
        steps,
        eta: row
            .get::<_, Option<i64>>("eta_ms")
            .filter(|_| status == Status::Running)
            .map(|ms| Duration::from_millis(ms.max(0) as u64)),
        images: row.get::<_, i32>("images").max(0) as usize,
        error: row.get("error"),
    }
}

const VIEW_COLUMNS: &str = "status, images, error, steps_done, steps_total, eta_ms";

impl Db {
    /// Connects to `url` with at most `connections` connections and prepares the tables. With
    /// `sslmode=require` in the URL the connections use TLS, the server's certificate checked
    /// against `ca_file` (PEM) or else the public web roots; otherwise they are plain TCP.
    pub async fn connect(
        url: &str,
        connections: usize,
        ca_file: Option<&Path>,
    ) -> Result<Self, DbError> {
        let config: tokio_postgres::Config = url.parse().map_err(failed("URL is not valid"))?;
        let recycling = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let tls = if config.get_ssl_mode() == SslMode::Require {
            Some(tls(ca_file)?)
        } else {
            None
        };
        let manager = match &tls {
            Some(tls) => Manager::from_config(config.clone(), tls.clone(), recycling),
            None => Manager::from_config(config.clone(), NoTls, recycling),
        };
        let pool = Pool::builder(manager)
            .max_size(connections)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(5)))
            .wait_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(failed("pool cannot be made"))?;
        let db = Db {
            pool,
            direct: Arc::new(Direct { config, tls }),
        };
        let mut client = db.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(failed("cannot be prepared"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await
            .map_err(failed("cannot be prepared"))?;
        tx.batch_execute(SCHEMA)
            .await
            .map_err(failed("cannot be prepared"))?;
        tx.commit().await.map_err(failed("cannot be prepared"))?;
        Ok(db)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        self.pool.get().await.map_err(failed("cannot be reached"))
    }

    /// Wakes the waiters of `wake` whenever a job is made ready to run, from now on: a
    /// connection of its own `LISTEN`s (connected again when it drops), and each (re)connection
    /// wakes them too, for the notices missed meanwhile.
    pub fn wake_on_new_jobs(&self, wake: Arc<Notify>) {
        let db = self.clone();
        tokio::spawn(async move {
            loop {
                let ended = match &db.direct.tls {
                    Some(tls) => db.listen(tls.clone(), wake.clone()).await,
                    None => db.listen(NoTls, wake.clone()).await,
                };
                if let Err(e) = ended {
                    tracing::warn!(error = %e, "not told of new jobs; listening again");
                }
                tokio::time::sleep(RELISTEN).await;
            }
        });
    }

    /// One listening connection, until it ends.
    async fn listen<T>(&self, tls: T, wake: Arc<Notify>) -> Result<(), DbError>
    where
        T: MakeTlsConnect<Socket>,
        T::Stream: Send + 'static,
    {
        let (client, mut connection) = self
            .direct
            .config
            .connect(tls)
            .await
            .map_err(failed("cannot be reached to listen"))?;
        let notices = wake.clone();
        // The connection's messages: query results go to `client`, notices wake the waiters.
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(|cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => notices.notify_waiters(),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        client
            .batch_execute(&format!("LISTEN {JOBS_CHANNEL}"))
            .await
            .map_err(failed("cannot be listened to"))?;
        wake.notify_waiters();
        // `client` stays open while the connection lasts.
        let ended = driver.await;
        drop(client);
        match ended {
            Ok(Ok(())) => Err(failed("listener connection ended")("closed by the server")),
            Ok(Err(e)) => Err(failed("listener connection ended")(e)),
            Err(e) => Err(failed("listener connection ended")(e)),
        }
    }

    /// Writes down a new job for `caller`, within their limit of open jobs; with an
    /// `idempotency_key` they used before, returns the job made then instead.
    pub async fn submit(
        &self,
        caller: &Caller,
        request: &StoredRequest,
        idempotency_key: Option<&str>,
        max_open: usize,
    ) -> Result<String, SubmitError> {
        let store_error = |e: DbError| {
            tracing::error!(error = %e, "cannot record a job");
            SubmitError::Store(e.to_string())
        };
        let pg = |e: tokio_postgres::Error| store_error(failed("cannot record a job")(e));
        let mut client = self.client().await.map_err(store_error)?;
        let tx = client.transaction().await.map_err(pg)?;
        // One submission per user at a time, on every node: the count below stays true.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&caller.sub])
            .await
            .map_err(pg)?;
        if let Some(key) = idempotency_key {
            if let Some(row) = tx
                .query_opt(
                    "SELECT id FROM jobs WHERE owner = $1 AND idempotency_key = $2",
                    &[&caller.sub, &key],
                )
                .await
                .map_err(pg)?
            {
                return Ok(row.get(0));
            }
        }
        let open: i64 = tx
            .query_one(
                "SELECT count(*) FROM jobs WHERE owner = $1 AND status IN ('queued', 'running')",
                &[&caller.sub],
            )
            .await
            .map_err(pg)?
            .get(0);
        if open as usize >= max_open {
            return Err(SubmitError::TooMany(max_open));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let text = serde_json::to_string(request).expect("requests serialise");
        tx.execute(
            "INSERT INTO jobs (id, owner, username, request, status, idempotency_key)
             VALUES ($1, $2, $3, $4, 'queued', $5)",
            &[&id, &caller.sub, &caller.username, &text, &idempotency_key],
        )
        .await
        .map_err(pg)?;
        // Delivered when the transaction commits.
        tx.execute("SELECT pg_notify($1, '')", &[&JOBS_CHANNEL])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(id)
    }

    /// `owner`'s job `id` (another user's job looks just like a missing one).
    pub async fn view(&self, owner: &str, id: &str) -> Result<Option<JobView>, DbError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {VIEW_COLUMNS} FROM jobs WHERE id = $1 AND owner = $2"),
                &[&id, &owner],
            )
            .await
            .map_err(failed("cannot be read"))?;
        Ok(row.as_ref().map(view_of))
    }

    /// Cancels `owner`'s job `id`: a queued job ends now; a running one is marked, and its
    /// worker stops it at its next heartbeat.
    pub async fn cancel(&self, owner: &str, id: &str) -> Result<JobView, CancelOrDb> {
        let client = self.client().await?;
        let changed = client
            .query_opt(
                &format!(
                    "UPDATE jobs SET cancel_requested = TRUE,
                         status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
                         finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END
                     WHERE id = $1 AND owner = $2 AND status IN ('queued', 'running')
                     RETURNING {VIEW_COLUMNS}"
                ),
                &[&id, &owner],
            )
            .await
            .map_err(failed("cannot cancel a job"))?;
        if let Some(row) = changed {
            return Ok(view_of(&row));
        }
        match self.view(owner, id).await? {
            None => Err(CancelOrDb::Cancel(CancelError::NotFound)),
            Some(view) => Err(CancelOrDb::Cancel(CancelError::Ended(view.status))),
        }
    }

    /// How many jobs are in each state.
    pub async fn counts(&self) -> Result<Vec<(Status, usize)>, DbError> {
        let rows = self
            .client()
            .await?
            .query("SELECT status, count(*) FROM jobs GROUP BY status", &[])
            .await
            .map_err(failed("cannot be read"))?;
        Ok(Status::ALL
            .map(|status| {
                let n = rows
                    .iter()
                    .find(|row| row.get::<_, &str>(0) == status.name())
                    .map_or(0, |row| row.get::<_, i64>(1));
                (status, n as usize)
            })
            .to_vec())
    }

    /// The workers seen within `alive`.
    pub async fn live_workers(&self, alive: Duration) -> Result<usize, DbError> {
        let workers: i64 = self
            .client()
            .await?
            .query_one(
                "SELECT count(*) FROM workers WHERE seen_at > now() - make_interval(secs => $1)",
                &[&alive.as_secs_f64()],
            )
            .await
            .map_err(failed("cannot be read"))?
            .get(0);
        Ok(workers as usize)
    }

    /// Removes jobs finished longer ago than `retention`; returns each one's owner, id and
    /// image count, for their images to be removed.
    pub async fn forget_expired(
        &self,
        retention: Duration,
    ) -> Result<Vec<(String, String, usize)>, DbError> {
        let rows = self
            .client()
            .await?
            .query(
                "DELETE FROM jobs WHERE finished_at < now() - make_interval(secs => $1)
                 RETURNING owner, id, images",
                &[&retention.as_secs_f64()],
            )
            .await
            .map_err(failed("cannot forget old jobs"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get::<_, i32>(2).max(0) as usize))
            .collect())
    }

    /// Claims the oldest job waiting (or whose lease ran out) for `worker`, leased for `lease`.
    /// Jobs whose lease ran out after their last allowed start fail first, with the reason
    /// (or end cancelled, when their owner had asked).
    pub async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        max_attempts: u32,
    ) -> Result<Option<Claimed>, DbError> {
        let client = self.client().await?;
        let gave_up = format!(
            "the job was started {max_attempts} times and its worker stopped answering each time"
        );
        client
            .execute(
                "UPDATE jobs SET
                     status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END,
                     error = CASE WHEN cancel_requested THEN error ELSE $2 END,
                     finished_at = now(), lease_until = NULL, worker = NULL
                 WHERE status = 'running' AND lease_until < now()
                   AND (attempts >= $1 OR cancel_requested)",
                &[&(max_attempts as i32), &gave_up],
            )
            .await
            .map_err(failed("cannot fail abandoned jobs"))?;
        let row = client
            .query_opt(
                "WITH next AS (
                     SELECT id FROM jobs
                     WHERE (status = 'queued' AND (run_after IS NULL OR run_after <= now()))
                        OR (status = 'running' AND lease_until < now())
                     ORDER BY created_at
                     FOR UPDATE SKIP LOCKED
                     LIMIT 1)
                 UPDATE jobs SET status = 'running', worker = $1,
                     lease_until = now() + make_interval(secs => $2),
                     attempts = attempts + 1, images = 0, steps_done = NULL,
                     steps_total = NULL, eta_ms = NULL, started_at = now()
                 FROM next WHERE jobs.id = next.id
                 RETURNING jobs.id, jobs.owner, jobs.username, jobs.request, jobs.attempts,
                     EXTRACT(EPOCH FROM now() - jobs.created_at)::float8",
                &[&worker, &lease.as_secs_f64()],
            )
            .await
            .map_err(failed("cannot claim a job"))?;
        Ok(row.map(|r| Claimed {
            id: r.get(0),
            owner: r.get(1),
            username: r.get(2),
            request: serde_json::from_str(r.get::<_, &str>(3))
                .map_err(|e| format!("the stored request cannot be read: {e}")),
            attempt: r.get(4),
            waited: Duration::from_secs_f64(r.get::<_, f64>(5).max(0.0)),
        }))
    }

    /// Renews `worker`'s lease on attempt `attempt` of job `id` for `lease` and records its
    /// progress; says whether the owner asked to cancel, or the lease is gone.
    pub async fn heartbeat(
        &self,
        worker: &str,
        id: &str,
        attempt: i32,
        lease: Duration,
        steps: Option<crate::work::Steps>,
    ) -> Result<Beat, DbError> {
        let client = self.client().await?;
        let (done, total, eta) = match steps {
            Some(s) => (
                Some(s.done as i32),
                Some(s.total as i32),
                s.eta.map(|d| d.as_millis() as i64),
            ),
            None => (None, None, None),
        };
        let row = client
            .query_opt(
                "UPDATE jobs SET lease_until = now() + make_interval(secs => $4),
                     steps_done = COALESCE($5, steps_done), steps_total = COALESCE($6, steps_total),
                     eta_ms = COALESCE($7, eta_ms)
                 WHERE id = $1 AND worker = $2 AND attempts = $3 AND status = 'running'
                 RETURNING cancel_requested",
                &[
                    &id,
                    &worker,
                    &attempt,
                    &lease.as_secs_f64(),
                    &done,
                    &total,
                    &eta,
                ],
            )
            .await
            .map_err(failed("cannot renew a lease"))?;
        Ok(match row {
            None => Beat::Lost,
            Some(r) if r.get::<_, bool>(0) => Beat::CancelRequested,
            Some(_) => Beat::Held,
        })
    }

    /// Records that attempt `attempt` of job `id` has `images` images stored.
    pub async fn stored_images(
        &self,
        worker: &str,
        id: &str,
        attempt: i32,
        images: usize,
    ) -> Result<(), DbError> {
        self.client()
            .await?
            .execute(
                "UPDATE jobs SET images = $4
                 WHERE id = $1 AND worker = $2 AND attempts = $3 AND status = 'running'",
                &[&id, &worker, &attempt, &(images as i32)],
            )
            .await
            .map_err(failed("cannot record an image"))?;
        Ok(())
    }

    /// Ends attempt `attempt` of job `id` as `outcome` (a retry queues it again after `backoff`
    /// while starts are left, else fails it with the reason); false when the lease was no
    /// longer `worker`'s and nothing changed.
    pub async fn finish(
        &self,
        worker: &str,
        id: &str,
        attempt: i32,
        outcome: &Outcome,
        max_attempts: u32,
        backoff: Duration,
    ) -> Result<bool, DbError> {
        let client = self.client().await?;
        let owned = "WHERE id = $1 AND worker = $2 AND attempts = $3 AND status = 'running'";
        let changed = match outcome {
            Outcome::Succeeded(images) | Outcome::Cancelled(images) => {
                let status = if matches!(outcome, Outcome::Succeeded(_)) {
                    Status::Succeeded
                } else {
                    Status::Cancelled
                }
                .name();
                client
                    .execute(
                        &format!(
                            "UPDATE jobs SET status = $4, images = $5, finished_at = now(),
                                 lease_until = NULL, error = NULL {owned}"
                        ),
                        &[&id, &worker, &attempt, &status, &(*images as i32)],
                    )
                    .await
            }
            Outcome::Failed(reason) => {
                client
                    .execute(
                        &format!(
                            "UPDATE jobs SET status = 'failed', error = $4, finished_at = now(),
                                 lease_until = NULL {owned}"
                        ),
                        &[&id, &worker, &attempt, reason],
                    )
                    .await
            }
            Outcome::Retry(reason) => {
                let gave_up = format!("gave up after {max_attempts} attempts: {reason}");
                client
                    .execute(
                        &format!(
                            "UPDATE jobs SET
                                 status = CASE WHEN attempts >= $4 THEN 'failed' ELSE 'queued' END,
                                 error = CASE WHEN attempts >= $4 THEN $5 ELSE $6 END,
                                 finished_at = CASE WHEN attempts >= $4 THEN now() END,
                                 run_after = now() + make_interval(secs => $7),
                                 images = 0, worker = NULL, lease_until = NULL {owned}"
                        ),
                        &[
                            &id,
                            &worker,
                            &attempt,
                            &(max_attempts as i32),
                            &gave_up,
                            reason,
                            &backoff.as_secs_f64(),
                        ],
                    )
                    .await
            }
        }
        .map_err(failed("cannot record a job's end"))?;
        Ok(changed == 1)
    }

    /// Puts attempt `attempt` of job `id` back in the queue without counting it (its worker is
    /// stopping).
    pub async fn release(&self, worker: &str, id: &str, attempt: i32) -> Result<(), DbError> {
        let client = self.client().await?;
        let released = client
            .execute(
                "UPDATE jobs SET status = 'queued', attempts = attempts - 1, images = 0,
                     worker = NULL, lease_until = NULL
                 WHERE id = $1 AND worker = $2 AND attempts = $3 AND status = 'running'",
                &[&id, &worker, &attempt],
            )
            .await
            .map_err(failed("cannot release a job"))?;
        if released == 1 {
            client
                .execute("SELECT pg_notify($1, '')", &[&JOBS_CHANNEL])
                .await
                .map_err(failed("cannot announce a released job"))?;
        }
        Ok(())
    }

    /// Records that `worker` is alive.
    pub async fn worker_seen(&self, worker: &str) -> Result<(), DbError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO workers (name, seen_at) VALUES ($1, now())
                 ON CONFLICT (name) DO UPDATE SET seen_at = now()",
                &[&worker],
            )
            .await
            .map_err(failed("cannot record a worker"))?;
        Ok(())
    }

    /// Forgets `worker` (it stopped).
    pub async fn worker_gone(&self, worker: &str) -> Result<(), DbError> {
        self.client()
            .await?
            .execute("DELETE FROM workers WHERE name = $1", &[&worker])
            .await
            .map_err(failed("cannot record a worker"))?;
        Ok(())
    }

    /// Makes a key named `name` for `caller`; returns it as listed and the key itself (shown
    /// this once).
    pub async fn create_key(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<(ApiKeyInfo, String), DbError> {
        let (info, key) = new_key(name);
        self.client()
            .await?
            .execute(
                "INSERT INTO api_keys (id, owner, username, name, hash, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &info.id,
                    &caller.sub,
                    &caller.username,
                    &info.name,
                    &hash(&key),
                    &(info.created_at as i64),
                ],
            )
            .await
            .map_err(failed("cannot record an API key"))?;
        Ok((info, key))
    }

    /// `owner`'s keys, oldest first.
    pub async fn keys(&self, owner: &str) -> Result<Vec<ApiKeyInfo>, DbError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, name, created_at, revoked_at IS NOT NULL FROM api_keys
                 WHERE owner = $1 ORDER BY created_at, id",
                &[&owner],
            )
            .await
            .map_err(failed("cannot be read"))?;
        Ok(rows
            .iter()
            .map(|r| ApiKeyInfo {
                id: r.get(0),
                name: r.get(1),
                created_at: r.get::<_, i64>(2).max(0) as u64,
                revoked: r.get(3),
            })
            .collect())
    }

    /// Revokes `owner`'s key `id`; false when they have no such key.
    pub async fn revoke_key(&self, owner: &str, id: &str) -> Result<bool, DbError> {
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3)
                 WHERE id = $1 AND owner = $2",
                &[&id, &owner, &seconds(SystemTime::now())],
            )
            .await
            .map_err(failed("cannot revoke an API key"))?;
        Ok(changed == 1)
    }

    /// The owner of `key`, if it is a key that was made and not revoked.
    pub async fn key_owner(&self, key: &str) -> Result<Option<Caller>, DbError> {
        if !key.starts_with(PREFIX) {
            return Ok(None);
        }
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT owner, username FROM api_keys WHERE hash = $1 AND revoked_at IS NULL",
                &[&hash(key)],
            )
            .await
            .map_err(failed("cannot be read"))?;
        Ok(row.map(|r| Caller {
            sub: r.get(0),
            username: r.get(1),
        }))
    }
}

/// A refused cancel, or a database failure.
#[derive(Debug, thiserror::Error)]
pub enum CancelOrDb {
    /// The job is not the caller's, or already ended.
    #[error(transparent)]
    Cancel(CancelError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}
