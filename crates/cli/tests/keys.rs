//! `selfdiffusion-cli keys` against the real server on loopback, with an account in the Cognito
//! emulator: a key made from the command line works with the server's `/v1` API, is listed, and
//! is refused once revoked.

#[path = "../../cloud/tests/common/mod.rs"]
mod cognito;
#[path = "../../engine/tests/common/mod.rs"]
mod engine;

use std::io::Write;
use std::process::{Command, Stdio};

use selfdiffusion_cloud::Accounts;
use selfdiffusion_server::config::{AuthConfig, Config};

/// Runs the CLI with the service's environment, the password on stdin; returns its exit
/// status, stdout and stderr.
fn cli(env: &[(&str, String)], args: &[&str], password: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_selfdiffusion-cli"))
        .args(args)
        .env_remove("SELFDIFFUSION_PASSWORD")
        .env_remove("SELFDIFFUSION_CLOUD_URL")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_are_made_listed_and_revoked_from_the_command_line() {
    let Some(moto) = cognito::moto() else { return };
    let config = cognito::pool(&moto.url, false).await;
    let accounts = Accounts::new(config.clone());
    accounts
        .sign_up("kim@example.com", "kim", cognito::PASSWORD)
        .await
        .unwrap();
    accounts.confirm_sign_up("kim", "123456").await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    engine::tiny_model(&dir.path().join("model"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Config {
        listen: addr,
        data_dir: dir.path().join("data"),
        model: Some(dir.path().join("model")),
        device: "cpu".into(),
        auth: AuthConfig {
            issuer: Some(format!(
                "https://cognito-idp.{}.amazonaws.com/{}",
                config.region, config.user_pool_id
            )),
            jwks_url: Some(format!(
                "{}/{}/.well-known/jwks.json",
                moto.url, config.user_pool_id
            )),
            client_ids: vec![config.client_id.clone()],
            ..AuthConfig::default()
        },
        ..Config::default()
    };
    let state = selfdiffusion_server::build(&server).unwrap();
    tokio::spawn(async move {
        axum::serve(listener, selfdiffusion_server::router(state))
            .await
            .unwrap()
    });
    let base = format!("http://{addr}");
    let env = [
        ("SELFDIFFUSION_CLOUD_URL", base.clone()),
        ("SELFDIFFUSION_COGNITO_REGION", config.region.clone()),
        (
            "SELFDIFFUSION_COGNITO_USER_POOL_ID",
            config.user_pool_id.clone(),
        ),
        ("SELFDIFFUSION_COGNITO_CLIENT_ID", config.client_id.clone()),
        ("SELFDIFFUSION_COGNITO_ENDPOINT", moto.url.clone()),
        ("SELFDIFFUSION_USERNAME", "kim".into()),
    ];
    let keys = |args: &'static [&'static str]| {
        let mut all = vec!["keys", "--password-stdin"];
        all.extend_from_slice(args);
        all
    };
    let (ok, out, err) = cli(
        &env,
        &keys(&["--json", "create", "nightly script"]),
        cognito::PASSWORD,
    );
    assert!(ok, "{err}");
    let made: serde_json::Value = serde_json::from_str(&out).unwrap();
    let key = made["key"].as_str().unwrap().to_owned();
    let id = made["info"]["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sdk_"), "{out}");
    assert_eq!(made["info"]["name"], "nightly script");

    // The key works against the server's /v1 API (the job is simply missing).
    let call = |key: String| {
        let url = format!("{base}/v1/generations/no-such-job");
        async move {
            reqwest::Client::new()
                .get(url)
                .header("X-API-Key", key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(call(key.clone()).await, 404);

    let (ok, out, err) = cli(&env, &keys(&["list"]), cognito::PASSWORD);
    assert!(ok, "{err}");
    assert!(out.contains(&id) && out.contains("nightly script"), "{out}");
    assert!(!out.contains(&key), "a listed key is never shown: {out}");

    let revoke = ["keys", "--password-stdin", "revoke", id.as_str()];
    let (ok, out, err) = cli(&env, &revoke, cognito::PASSWORD);
    assert!(ok, "{err}");
    assert!(out.contains("revoked"), "{out}");
    assert_eq!(call(key).await, 401, "a revoked key is refused");
    let (_, out, _) = cli(&env, &keys(&["list"]), cognito::PASSWORD);
    assert!(out.contains("(revoked)"), "{out}");

    // A wrong password, and a missing service, say what is wrong.
    let (ok, _, err) = cli(&env, &keys(&["list"]), "Wrong7Password");
    assert!(!ok);
    assert!(err.contains("wrong username or password"), "{err}");
    let (ok, _, err) = cli(&env[1..], &keys(&["list"]), cognito::PASSWORD);
    assert!(!ok);
    assert!(err.contains("the cloud API URL"), "{err}");
}
