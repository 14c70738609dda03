//! Scale-out: any number of stateless `api` nodes and one `worker` process per GPU share a
//! PostgreSQL job table (the queue: [`db`]) and an S3-compatible bucket for the images
//! ([`objects`]). Any API node answers and streams any job: workers write progress into the
//! job's row with each heartbeat.

pub mod db;
pub mod objects;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use crate::config::ClusterConfig;
use crate::StartError;
use db::Db;
use objects::Objects;

/// Connects to the database and bucket `config` names (checked by
/// [`ClusterConfig::validate`]).
pub async fn connect(config: &ClusterConfig) -> Result<(Db, Arc<Objects>), StartError> {
    let url = config
        .database_url
        .as_ref()
        .map(|s| s.0.as_str())
        .unwrap_or_default();
    let db = Db::connect(
        url,
        config.database_connections,
        config.database_ca_file.as_deref(),
    )
    .await?;
    let objects = Arc::new(Objects::new(config)?);
    Ok((db, objects))
}

/// This process's name in the job table: host, process id and a random tail, so a restarted
/// worker never takes over its predecessor's leases by name.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    let tail = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{host}-{}-{tail}", std::process::id())
}

/// How often an API node removes the jobs (and images) older than the retention time.
const SWEEP: Duration = Duration::from_secs(60);

/// Removes, every minute, the jobs finished longer ago than `retention` and their images.
/// Several nodes doing so at once is fine: each row is deleted once.
pub fn forget_expired_jobs(db: Db, objects: Arc<Objects>, retention: Duration) {
    tokio::spawn(async move {
        loop {
            match db.forget_expired(retention).await {
                Ok(expired) => {
                    for (owner, id, images) in expired {
                        if let Err(e) = objects.remove(&owner, &id, images).await {
                            tracing::warn!(job = %id, error = %e, "cannot remove an old job's images");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot forget old jobs"),
            }
            tokio::time::sleep(SWEEP).await;
        }
    });
}
