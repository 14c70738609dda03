//! Account flows through the real Cognito SDK against the moto emulator on loopback
//! (installed by the test command; see shared/notes/cognito-emulator.md for its behaviour).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use aws_sdk_cognitoidentityprovider as cip;
use cip::types::{ExplicitAuthFlowsType, PasswordPolicyType, UserPoolPolicyType};
use selfdiffusion_cloud::{needs_refresh, AccountError, Accounts, CognitoConfig, RefreshStore};

struct Moto {
    child: Child,
    url: String,
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
fn moto() -> Option<Moto> {
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
async fn pool(url: &str, with_secret: bool) -> CognitoConfig {
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

const PASSWORD: &str = "Sunlit7Lighthouse";

async fn flow(url: &str, with_secret: bool) {
    let config = pool(url, with_secret).await;
    assert_eq!(config.client_secret.is_some(), with_secret);
    let accounts = Accounts::new(config);
    accounts
        .sign_up("ada@example.com", "ada", PASSWORD)
        .await
        .unwrap();
    assert_eq!(
        accounts.log_in("ada", PASSWORD).await.unwrap_err(),
        AccountError::NotConfirmed
    );
    accounts.confirm_sign_up("ada", "123456").await.unwrap();
    let tokens = accounts.log_in("ada", PASSWORD).await.unwrap();
    assert!(!needs_refresh(&tokens, SystemTime::now()));
    let user = accounts.current_user(&tokens).await.unwrap();
    assert_eq!(
        (user.username.as_str(), user.email.as_deref()),
        ("ada", Some("ada@example.com"))
    );
    assert!(
        !format!("{tokens:?}").contains(tokens.access_token()),
        "tokens never reach Debug output"
    );

    // The access token is made to expire: it is refreshed, and the new one works.
    let expiring = tokens
        .clone()
        .expiring_at(SystemTime::now() + Duration::from_secs(30));
    assert!(needs_refresh(&expiring, SystemTime::now()));
    let fresh = accounts.refresh(&expiring).await.unwrap();
    assert_eq!(fresh.refresh_token(), tokens.refresh_token());
    assert_eq!(accounts.current_user(&fresh).await.unwrap().username, "ada");

    accounts.sign_out(&fresh).await.unwrap();
    assert_eq!(
        accounts.refresh(&fresh).await.unwrap_err(),
        AccountError::WrongCredentials
    );
    assert_eq!(
        accounts.current_user(&fresh).await.unwrap_err(),
        AccountError::WrongCredentials
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_up_confirm_log_in_refresh_and_sign_out() {
    let Some(moto) = moto() else { return };
    flow(&moto.url, false).await;
    flow(&moto.url, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_clear() {
    let Some(moto) = moto() else { return };
    let accounts = Accounts::new(pool(&moto.url, false).await);
    accounts
        .sign_up("bo@example.com", "bo", PASSWORD)
        .await
        .unwrap();
    assert_eq!(
        accounts
            .sign_up("bo2@example.com", "bo", PASSWORD)
            .await
            .unwrap_err(),
        AccountError::UsernameExists
    );
    match accounts
        .sign_up("cy@example.com", "cy", "short")
        .await
        .unwrap_err()
    {
        AccountError::WeakPassword(policy) => assert!(!policy.is_empty()),
        other => panic!("{other:?}"),
    }
    for (email, user, pass) in [
        ("not-an-email", "x", PASSWORD),
        ("a@b.c", "  ", PASSWORD),
        ("a@b.c", "x", ""),
    ] {
        assert!(
            matches!(
                accounts.sign_up(email, user, pass).await,
                Err(AccountError::Invalid(_))
            ),
            "{email} {user:?}"
        );
    }
    accounts.confirm_sign_up("bo", "000000").await.unwrap();
    assert_eq!(
        accounts.log_in("bo", "Wrong7Password").await.unwrap_err(),
        AccountError::WrongCredentials
    );
    let unknown = accounts.log_in("nobody", PASSWORD).await.unwrap_err();
    assert!(
        matches!(
            unknown,
            AccountError::UnknownUser | AccountError::WrongCredentials
        ),
        "{unknown:?}"
    );
    // moto does not implement ResendConfirmationCode: the failure still reads clearly.
    assert!(matches!(
        accounts.resend_code("bo").await,
        Err(AccountError::Service(_))
    ));

    // Forgot password: a wrong code is refused, the right one sets the new password.
    accounts.forgot_password("bo").await.unwrap();
    let new_password = "Harbour9Lights";
    let wrong = accounts
        .confirm_forgot_password("bo", "moto-confirmation-code:000000", new_password)
        .await;
    assert!(
        matches!(
            wrong,
            Err(AccountError::ExpiredCode | AccountError::WrongCode)
        ),
        "{wrong:?}"
    );
    accounts
        .confirm_forgot_password("bo", "123456", new_password)
        .await
        .unwrap();
    assert_eq!(
        accounts.log_in("bo", PASSWORD).await.unwrap_err(),
        AccountError::WrongCredentials
    );
    accounts.log_in("bo", new_password).await.unwrap();

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let offline = Accounts::new(CognitoConfig {
        endpoint_url: Some(format!("http://{closed}")),
        ..pool(&moto.url, false).await
    });
    assert_eq!(
        offline.log_in("bo", new_password).await.unwrap_err(),
        AccountError::Offline
    );
}

#[test]
fn secret_hash_matches_the_documented_formula_and_the_secret_stays_out_of_logs() {
    let config = CognitoConfig {
        region: "us-east-1".into(),
        user_pool_id: "pool".into(),
        client_id: "client123".into(),
        client_secret: Some("shh-secret".into()),
        endpoint_url: None,
    };
    assert!(!format!("{config:?}").contains("shh-secret"));
    // Base64(HMAC-SHA256(secret, username + client id)), computed independently in Python.
    let accounts = Accounts::new(config);
    assert_eq!(
        accounts.secret_hash("alice").as_deref(),
        Some("uog0f2cULYkfm+iBcKreKClhtEY9eeE8U/Z9u63DyP8=")
    );
}

#[test]
fn the_refresh_token_is_stored_privately() {
    let dir = tempfile::tempdir().unwrap();
    let store = RefreshStore::new(dir.path().join("cfg/session.json"));
    assert_eq!(store.load(), None);
    let tokens = selfdiffusion_cloud::Tokens::new(
        "ada",
        "id",
        "access",
        "refresh-xyz",
        Duration::from_secs(3600),
    );
    store.save(&tokens).unwrap();
    assert_eq!(store.load(), Some(("ada".into(), "refresh-xyz".into())));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let restored = selfdiffusion_cloud::restored("ada", "refresh-xyz");
    assert!(
        needs_refresh(&restored, SystemTime::now()),
        "a restored session refreshes before use"
    );
    store.clear().unwrap();
    assert_eq!(store.load(), None);
}
