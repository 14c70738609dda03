//! "Log in with Google" against a loopback authorization server that plays the Cognito hosted
//! UI: it checks the authorization request, sends the browser back to the app's loopback
//! address with a code, and hands out tokens only for that code with the right PKCE verifier.
//! The test plays the browser.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use selfdiffusion_cloud::{AccountError, HostedUi};
use sha2::{Digest, Sha256};

/// What the authorization server saw and handed out.
#[derive(Default)]
struct Auth {
    /// The code challenge of each code issued.
    challenges: HashMap<String, (String, String)>,
    /// Refuse the next login (as a user who says no on Google's page).
    refuse: bool,
}

fn id_token(username: &str) -> String {
    let part = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.signature",
        part(serde_json::json!({ "alg": "RS256", "kid": "k" })),
        part(serde_json::json!({ "cognito:username": username, "email": "ana@example.com" }))
    )
}

/// Serves `/oauth2/authorize` and `/oauth2/token` on loopback; returns its base URL.
fn authorization_server(auth: Arc<Mutex<Auth>>) -> String {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let base = format!("http://{}", server.server_addr().to_ip().unwrap());
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let url = reqwest::Url::parse(&format!("http://x{}", request.url())).unwrap();
            let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
            let mut body = String::new();
            let _ = std::io::Read::read_to_string(request.as_reader(), &mut body);
            let form: HashMap<String, String> = reqwest::Url::parse(&format!("http://x/?{body}"))
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect();
            let json = |code: u16, v: serde_json::Value| {
                tiny_http::Response::from_string(v.to_string())
                    .with_status_code(code)
                    .with_header(
                        tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap(),
                    )
                    .boxed()
            };
            let mut auth = auth.lock().unwrap();
            let response = match url.path() {
                "/oauth2/authorize" => {
                    let expected = [
                        ("response_type", "code"),
                        ("client_id", "app-client"),
                        ("identity_provider", "Google"),
                        ("code_challenge_method", "S256"),
                        ("scope", "openid email profile"),
                    ];
                    let redirect = query.get("redirect_uri").cloned().unwrap_or_default();
                    let state = query.get("state").cloned().unwrap_or_default();
                    if expected
                        .iter()
                        .any(|(k, v)| query.get(*k).map(String::as_str) != Some(v))
                        || !redirect.starts_with("http://localhost:")
                        || state.len() < 16
                    {
                        json(400, serde_json::json!({ "error": "invalid_request" }))
                    } else {
                        let location = if std::mem::take(&mut auth.refuse) {
                            format!("{redirect}?error=access_denied&error_description=The+user+said+no&state={state}")
                        } else {
                            let code = format!("code-{}", auth.challenges.len());
                            auth.challenges.insert(
                                code.clone(),
                                (query["code_challenge"].clone(), redirect.clone()),
                            );
                            format!("{redirect}?code={code}&state={state}")
                        };
                        tiny_http::Response::empty(302)
                            .with_header(
                                tiny_http::Header::from_bytes("Location", location).unwrap(),
                            )
                            .boxed()
                    }
                }
                "/oauth2/token" => {
                    let code = form.get("code").cloned().unwrap_or_default();
                    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
                    // A code is good once, with the verifier of its challenge and its redirect.
                    match auth.challenges.remove(&code) {
                        Some((challenge, redirect))
                            if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
                                == challenge
                                && form.get("redirect_uri") == Some(&redirect)
                                && form.get("grant_type").map(String::as_str)
                                    == Some("authorization_code")
                                && form.get("client_id").map(String::as_str)
                                    == Some("app-client") =>
                        {
                            json(
                                200,
                                serde_json::json!({
                                    "id_token": id_token("Google_1234"),
                                    "access_token": "access", "refresh_token": "refresh",
                                    "expires_in": 3600, "token_type": "Bearer",
                                }),
                            )
                        }
                        _ => json(
                            400,
                            serde_json::json!({ "error": "invalid_grant", "error_description": "bad code or verifier" }),
                        ),
                    }
                }
                _ => json(404, serde_json::json!({ "error": "not found" })),
            };
            drop(auth);
            let _ = request.respond(response);
        }
    });
    base
}

/// The browser: follows the authorization URL (and its redirect to the app); returns the page
/// the app showed.
async fn browse(url: String) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn log_in_with_google_through_the_hosted_ui_with_pkce() {
    let auth = Arc::new(Mutex::new(Auth::default()));
    let ui = HostedUi {
        domain: authorization_server(auth.clone()),
        client_id: "app-client".into(),
        client_secret: None,
        port: 0,
    };

    let pending = ui.begin(Some("Google")).await.unwrap();
    let url = pending.url().to_owned();
    assert!(url.contains("identity_provider=Google"), "{url}");
    // A forged answer (another state) is refused and the login goes on waiting for the real one.
    let redirect = reqwest::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .unwrap()
        .1
        .into_owned();
    let browser = tokio::spawn(async move {
        let forged = browse(format!("{redirect}?code=code-9&state=forged")).await;
        (forged, browse(url).await)
    });
    let tokens = pending.finish(Duration::from_secs(30)).await.unwrap();
    assert_eq!(tokens.username(), "Google_1234");
    assert_eq!(tokens.id_token(), id_token("Google_1234"));
    let (forged, (status, page)) = browser.await.unwrap();
    assert_eq!(forged.0, 400, "a forged answer is refused: {}", forged.1);
    assert_eq!(status, 200);
    assert!(page.contains("You are logged in"), "{page}");
    assert!(
        auth.lock().unwrap().challenges.is_empty(),
        "the code was spent"
    );

    // Refused on the provider's page: a clear error, no tokens.
    auth.lock().unwrap().refuse = true;
    let pending = ui.begin(Some("Google")).await.unwrap();
    let browser = tokio::spawn(browse(pending.url().to_owned()));
    let err = pending.finish(Duration::from_secs(30)).await.unwrap_err();
    assert_eq!(
        err,
        AccountError::Service("the login was refused: The user said no".into())
    );
    browser.await.unwrap();

    // The browser never comes back.
    let pending = ui.begin(Some("Google")).await.unwrap();
    let err = pending
        .finish(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did not come back"), "{err}");
}
