//! The job database over TLS: with `?sslmode=require` the connections are encrypted and the
//! server's certificate is checked — against `database_ca_file`, else the public web roots —
//! so a server with a certificate nobody vouches for is refused.

mod common;

use common::services::Postgres;
use selfdiffusion_server::cluster::db::{tls, Db};

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

    // Without sslmode=require the URL keeps meaning plain TCP.
    Db::connect(&pg.url(), 2, None).await.unwrap();
}
