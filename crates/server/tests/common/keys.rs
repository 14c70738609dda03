//! Tokens signed with a key made for the tests, and a loopback server of its key set.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

/// The user pool the test tokens name.
pub const ISSUER: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_test";
/// The app client the test tokens are issued to.
pub const CLIENT: &str = "desktop-app";

/// A key set server whose keys the test can change; counts fetches.
pub struct KeySet {
    /// Where the key set is served.
    pub url: String,
    /// What it serves.
    pub body: Arc<Mutex<String>>,
    /// How often it was fetched.
    pub fetches: Arc<AtomicUsize>,
}

/// The test key as a JWK with id `kid`.
pub fn jwk(kid: &str) -> serde_json::Value {
    let mut key: serde_json::Value =
        serde_json::from_str(include_str!("../data/test-jwk.json")).unwrap();
    key["kid"] = kid.into();
    key
}

/// A key set of the test key under each of `kids`.
pub fn key_set(kids: &[&str]) -> String {
    serde_json::json!({ "keys": kids.iter().map(|k| jwk(k)).collect::<Vec<_>>() }).to_string()
}

/// Serves `key_set(kids)` on loopback.
pub fn serve_keys(kids: &[&str]) -> KeySet {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/us-east-1_test/.well-known/jwks.json",
        server.server_addr().to_ip().unwrap()
    );
    let body = Arc::new(Mutex::new(key_set(kids)));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (b, f) = (body.clone(), fetches.clone());
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            f.fetch_add(1, Ordering::SeqCst);
            let text = b.lock().unwrap().clone();
            let _ = request.respond(tiny_http::Response::from_string(text).with_header(
                tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap(),
            ));
        }
    });
    KeySet { url, body, fetches }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The claims of a valid ID token of user-1 (ana).
pub fn id_claims() -> serde_json::Value {
    serde_json::json!({
        "sub": "user-1", "iss": ISSUER, "aud": CLIENT, "token_use": "id",
        "cognito:username": "ana", "exp": now() + 3600, "iat": now(),
    })
}

/// `claims` signed with the test key as `kid`.
pub fn sign(kid: &str, claims: &serde_json::Value) -> String {
    let key = EncodingKey::from_rsa_pem(include_bytes!("../data/test-signing-key.pem")).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    encode(&header, claims, &key).unwrap()
}
