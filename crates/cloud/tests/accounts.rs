//! Account flows through the real Cognito SDK against the moto emulator on loopback
//! (installed by the test command; see shared/notes/cognito-emulator.md for its behaviour).

mod common;

use std::net::TcpListener;
use std::time::{Duration, SystemTime};

use common::{moto, pool, PASSWORD};
use selfdiffusion_cloud::{needs_refresh, AccountError, Accounts, CognitoConfig, RefreshStore};

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

/// A vault in memory, or one that refuses everything (no keyring on this system).
#[derive(Default)]
struct MemoryVault {
    refuse: bool,
    secrets: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl selfdiffusion_cloud::SecretVault for MemoryVault {
    fn set(&self, account: &str, secret: &str) -> Result<(), String> {
        if self.refuse {
            return Err("no secret service on the session bus".into());
        }
        self.secrets
            .lock()
            .unwrap()
            .insert(account.into(), secret.into());
        Ok(())
    }
    fn get(&self, account: &str) -> Result<Option<String>, String> {
        Ok(self.secrets.lock().unwrap().get(account).cloned())
    }
    fn delete(&self, account: &str) -> Result<(), String> {
        self.secrets.lock().unwrap().remove(account);
        Ok(())
    }
}

#[test]
fn the_refresh_token_goes_to_the_keyring_when_there_is_one_else_to_a_private_file() {
    let tokens = selfdiffusion_cloud::Tokens::new(
        "ada",
        "id",
        "access",
        "refresh-xyz",
        Duration::from_secs(3600),
    );
    let dir = tempfile::tempdir().unwrap();
    let vault = std::sync::Arc::new(MemoryVault::default());
    let store = RefreshStore::with_vault(dir.path().join("a/session.json"), Some(vault.clone()));
    store.save(&tokens).unwrap();
    assert_eq!(store.load(), Some(("ada".into(), "refresh-xyz".into())));
    let file = std::fs::read_to_string(store.path()).unwrap();
    assert!(
        !file.contains("refresh-xyz"),
        "the file only names the user: {file}"
    );
    assert_eq!(vault.secrets.lock().unwrap().len(), 1);
    store.clear().unwrap();
    assert!(
        vault.secrets.lock().unwrap().is_empty(),
        "sign-out empties the keyring entry"
    );
    assert_eq!(store.load(), None);

    let refusing = std::sync::Arc::new(MemoryVault {
        refuse: true,
        ..MemoryVault::default()
    });
    let store = RefreshStore::with_vault(dir.path().join("b/session.json"), Some(refusing));
    store.save(&tokens).unwrap();
    assert_eq!(store.load(), Some(("ada".into(), "refresh-xyz".into())));
    assert!(std::fs::read_to_string(store.path())
        .unwrap()
        .contains("refresh-xyz"));
}

#[test]
fn the_refresh_token_is_stored_privately() {
    // The real OS keyring where this system has one, else the private file: either way the
    // session comes back and is forgotten on clear.
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
