//! Token verification with a key made for the tests: expired, tampered, wrong issuer, wrong
//! client, wrong token use and algorithm are refused with 401; a rotated key is found by
//! fetching the key set again; an unreachable key set is a 503.

mod common;

use std::sync::atomic::Ordering;

use common::keys::{id_claims, key_set, now, serve_keys, sign, CLIENT, ISSUER};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use selfdiffusion_server::config::Limits;

/// `POST /result` for a job that does not exist: 404 means the token was accepted.
async fn result_status(base: &str, token: &str) -> (u16, String) {
    let (status, json) = common::post(
        &format!("{base}/result"),
        Some(token),
        r#"{"job_id": "no-such-job"}"#,
    )
    .await;
    (status, common::message(&json))
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_verified_against_the_key_set() {
    let keys = serve_keys(&["key-1"]);
    let server = common::start(ISSUER, &keys.url, CLIENT, Limits::default()).await;
    let base = &server.base;

    let good = sign("key-1", &id_claims());
    assert_eq!(
        result_status(base, &good).await,
        (404, "no job \"no-such-job\"".into())
    );
    let access = serde_json::json!({
        "sub": "user-1", "iss": ISSUER, "client_id": CLIENT, "token_use": "access",
        "username": "ana", "exp": now() + 3600,
    });
    assert_eq!(result_status(base, &sign("key-1", &access)).await.0, 404);
    assert_eq!(
        keys.fetches.load(Ordering::SeqCst),
        1,
        "the key set is cached"
    );

    let with = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut claims = id_claims();
        change(&mut claims);
        sign("key-1", &claims)
    };
    let refused = [
        (with(&|c| c["exp"] = (now() - 120).into()), "expired"),
        (
            with(&|c| c["iss"] = "https://evil.example".into()),
            "invalid token",
        ),
        (with(&|c| c["aud"] = "another-app".into()), "another-app"),
        (with(&|c| c["token_use"] = "refresh".into()), "token_use"),
        (
            with(&|c| {
                c.as_object_mut().unwrap().remove("token_use");
            }),
            "token_use",
        ),
    ];
    for (token, expected) in refused {
        let (status, message) = result_status(base, &token).await;
        assert_eq!(status, 401, "{message}");
        assert!(message.contains(expected), "{expected}: {message}");
    }

    // A changed payload breaks the signature.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut claims = id_claims();
    claims["sub"] = "user-2".into();
    parts[1] = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
    };
    let (status, message) = result_status(base, &parts.join(".")).await;
    assert_eq!(status, 401, "{message}");

    // HS256 with the public key as the secret (the classic confusion attack) is refused.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("key-1".into());
    let hs = encode(
        &header,
        &id_claims(),
        &EncodingKey::from_secret(include_bytes!("data/test-jwk.json")),
    )
    .unwrap();
    let (status, message) = result_status(base, &hs).await;
    assert_eq!(
        (status, message.contains("RS256 only")),
        (401, true),
        "{message}"
    );

    for garbage in ["", "not-a-jwt", "a.b.c"] {
        let (status, _) = result_status(base, garbage).await;
        assert_eq!(status, 401, "{garbage:?}");
    }
    let (status, json) = common::post(&format!("{base}/result"), None, "{}").await;
    assert_eq!(status, 401);
    assert!(common::message(&json).contains("Authorization: Bearer"));

    // The pool rotates its key: an unknown kid makes the server fetch the set again.
    *keys.body.lock().unwrap() = key_set(&["key-1", "key-2"]);
    let before = keys.fetches.load(Ordering::SeqCst);
    assert_eq!(
        result_status(base, &sign("key-2", &id_claims())).await.0,
        404
    );
    assert_eq!(keys.fetches.load(Ordering::SeqCst), before + 1);
    let (status, message) = result_status(base, &sign("key-9", &id_claims())).await;
    assert_eq!(status, 401);
    assert!(message.contains("unknown signing key"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_key_set_is_a_clear_503() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/jwks.json");
    let server = common::start(ISSUER, &url, CLIENT, Limits::default()).await;
    let (status, message) = result_status(&server.base, &sign("key-1", &id_claims())).await;
    assert_eq!(status, 503);
    assert!(
        message.contains("cannot fetch the token signing keys"),
        "{message}"
    );
}
