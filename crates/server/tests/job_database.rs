//! The job database on a throwaway PostgreSQL cluster. Over TLS: with `?sslmode=require` the
//! connections are encrypted and the server's certificate is checked — against
//! `database_ca_file`, else the public web roots — so a server with a certificate nobody vouches
//! for is refused. Notices: a submitted job wakes idle workers at once, also after the database
//! restarted.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::services::Postgres;
use selfdiffusion_server::auth::Caller;
use selfdiffusion_server::cluster::db::{tls, Db};
use selfdiffusion_server::store::StoredRequest;
use tokio::sync::Notify;

/// Waits for `event`; a bound on a hang, not a measure of speed.
async fn within(event: impl Future<Output = ()>, what: &str) {
    tokio::time::timeout(Duration::from_secs(30), event)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within 30 s"));
}

/// A waiter on `wake` that counts from now (a wake before it is awaited still counts).
fn waiter(wake: &Notify) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
    let mut notified = Box::pin(wake.notified());
    notified.as_mut().enable();
    notified
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_url_that_asks_for_tls_gets_verified_tls() {
    let Some(pg) = Postgres::start_with_tls() else {
        return;
    };
    let ca = pg.certificate.clone().unwrap();
    let url = format!("{}?sslmode=require", pg.url());

    // Its own certificate as the CA: connected, and the connection really is TLS.
    Db::connect(&url, 2, Some(&ca)).await.unwrap();
    let (client, connection) = tokio_postgres::connect(&url, tls(Some(&ca)).unwrap())
        .await
        .unwrap();
    tokio::spawn(connection);
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the connection is encrypted");

    // The public roots do not vouch for a self-signed certificate; another CA does not either.
    let err = Db::connect(&url, 2, None).await.err().expect("refused");
    assert!(err.to_string().contains("cannot be reached"), "{err}");
    let other = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other.path(), "not a certificate").unwrap();
    let err = Db::connect(&url, 2, Some(other.path()))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("holds no certificate"), "{err}");

    // The listener for new jobs connects over TLS too.
    let db = Db::connect(&url, 2, Some(&ca)).await.unwrap();
    let wake = Arc::new(Notify::new());
    let listening = waiter(&wake);
    db.wake_on_new_jobs(wake.clone());
    within(listening, "the listener connected over TLS").await;

    // Without sslmode=require the URL keeps meaning plain TCP.
    Db::connect(&pg.url(), 2, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submitted_job_wakes_idle_workers_also_after_a_restart() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let db = Db::connect(&pg.url(), 2, None).await.unwrap();
    let wake = Arc::new(Notify::new());
    let listening = waiter(&wake);
    db.wake_on_new_jobs(wake.clone());
    within(listening, "the listener connected").await;
    let caller = Caller {
        sub: "user-1".into(),
        username: "ann".into(),
    };
    let request = StoredRequest::Generate(Box::default());

    // Nothing is announced until a job is made.
    let mut quiet = waiter(&wake);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        futures_util::FutureExt::now_or_never(quiet.as_mut()).is_none(),
        "no job, no notice"
    );
    let announced = waiter(&wake);
    db.submit(&caller, &request, None, 8).await.unwrap();
    within(announced, "a submitted job announced").await;

    // The database restarts: the listener connects again (and wakes the workers, for the
    // notices it may have missed), and the next job is announced as before.
    let reconnected = waiter(&wake);
    tokio::task::block_in_place(|| pg.restart());
    within(reconnected, "the listener connected again").await;
    let announced = waiter(&wake);
    db.submit(&caller, &request, None, 8).await.unwrap();
    within(announced, "a job announced after the restart").await;
}
