//! The Cognito emulator (moto) for the cloud tests: started on a free loopback port, with a pool
//! and an app client made through the SDK.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_cognitoidentityprovider as cip;
use cip::types::{ExplicitAuthFlowsType, PasswordPolicyType, UserPoolPolicyType};
use selfdiffusion_cloud::CognitoConfig;

/// A password the test pools accept.
pub const PASSWORD: &str = "Sunlit7Lighthouse";

/// A running moto server.
pub struct Moto {
    child: Child,
    /// Its base URL.
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("MOTO_SERVER").map(PathBuf::from),
        dirs_home().map(|h| h.join(".cache/selfdiffusion-moto/bin/moto_server")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .or_else(|| {
            Command::new("moto_server")
                .arg("--help")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .ok()
                .map(|_| PathBuf::from("moto_server"))
        })
}

fn dirs_home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// Starts moto, or explains why not (a failure under `CI=true`).
pub fn moto() -> Option<Moto> {
    let Some(bin) = moto_binary() else {
        let msg = "moto_server not found (scripts/test.sh installs it; or set MOTO_SERVER)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}; under CI=true the Cognito tests must run");
        }
        eprintln!("skipped: {msg}");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // From here the child is owned by `Moto`, whose drop kills and reaps it.
    let moto = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(moto);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("moto_server did not start on port {port}");
}

/// Creates a pool (8+ characters, a digit, upper and lower case) and an app client. The pool is
/// in us-east-1: moto serves unsigned calls such as GlobalSignOut from its default region.
pub async fn pool(url: &str, with_secret: bool) -> CognitoConfig {
    let admin = cip::Client::from_conf(
        cip::Config::builder()
            .behavior_version(cip::config::BehaviorVersion::latest())
            .region(cip::config::Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(cip::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .build(),
    );
    let policy = PasswordPolicyType::builder()
        .minimum_length(8)
        .require_numbers(true)
        .require_uppercase(true)
        .require_lowercase(true)
        .require_symbols(false)
        .build();
    let pool = admin
        .create_user_pool()
        .pool_name("selfdiffusion")
        .policies(
            UserPoolPolicyType::builder()
                .password_policy(policy)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let pool_id = pool.user_pool().unwrap().id().unwrap().to_owned();
    let client = admin
        .create_user_pool_client()
        .user_pool_id(&pool_id)
        .client_name("desktop")
        .generate_secret(with_secret)
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserPasswordAuth)
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
        .send()
        .await
        .unwrap();
    let client = client.user_pool_client().unwrap();
    CognitoConfig {
        region: "us-east-1".into(),
        user_pool_id: pool_id,
        client_id: client.client_id().unwrap().to_owned(),
        client_secret: client.client_secret().map(str::to_owned),
        endpoint_url: Some(url.to_owned()),
    }
}
