//! Persistent settings, kept with tauri-plugin-store in the app config dir.

use std::path::PathBuf;

use selfdiffusion_cloud::{CognitoConfig, HostedUi, LOOPBACK_PORT};
use serde::{Deserialize, Serialize};
use tauri::AppHandle;
use tauri_plugin_store::StoreExt;

const STORE_FILE: &str = "settings.json";
const LIBRARY_FOLDER: &str = "library_folder";

/// The library folder the user chose, if any.
pub fn library_folder(app: &AppHandle) -> Option<PathBuf> {
    let store = app.store(STORE_FILE).ok()?;
    store
        .get(LIBRARY_FOLDER)?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// Remembers the library folder the user chose.
pub fn set_library_folder(app: &AppHandle, folder: &std::path::Path) -> anyhow::Result<()> {
    let store = app.store(STORE_FILE)?;
    store.set(LIBRARY_FOLDER, folder.to_string_lossy().into_owned());
    store.save()?;
    Ok(())
}

const UPSCALER: &str = "upscaler";

/// The ESRGAN upscaler file the user chose, if any (else images are upscaled by Lanczos).
pub fn upscaler(app: &AppHandle) -> Option<PathBuf> {
    let store = app.store(STORE_FILE).ok()?;
    store
        .get(UPSCALER)?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// Remembers the ESRGAN upscaler file, or forgets it (`None`: Lanczos).
pub fn set_upscaler(app: &AppHandle, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let store = app.store(STORE_FILE)?;
    match file {
        Some(file) => store.set(UPSCALER, file.to_string_lossy().into_owned()),
        None => {
            store.delete(UPSCALER);
        }
    }
    store.save()?;
    Ok(())
}

const CLOUD: &str = "cloud";

/// Where the cloud service is: the generation API and the Cognito user pool. Environment
/// variables (`SELFDIFFUSION_CLOUD_URL`, `SELFDIFFUSION_COGNITO_REGION`, `…_USER_POOL_ID`,
/// `…_CLIENT_ID`, `…_ENDPOINT`, `…_DOMAIN`) override what was saved. An app client secret, if the pool's
/// client has one, is read only from `SELFDIFFUSION_COGNITO_CLIENT_SECRET`, never saved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CloudSettings {
    /// Base URL of the generate/result API.
    pub api_url: String,
    /// The user pool's AWS region.
    pub region: String,
    /// The user pool id.
    pub user_pool_id: String,
    /// The app client id.
    pub client_id: String,
    /// Another Cognito endpoint (an emulator or a proxy); empty for AWS.
    pub cognito_endpoint: String,
    /// The pool's hosted UI domain (e.g. `https://myapp.auth.eu-west-1.amazoncognito.com`),
    /// for "Log in with Google"; empty when the pool has none.
    pub hosted_ui_domain: String,
}

impl CloudSettings {
    /// The same settings without surrounding blanks.
    pub fn trimmed(self) -> Self {
        CloudSettings {
            api_url: self.api_url.trim().trim_end_matches('/').to_owned(),
            region: self.region.trim().to_owned(),
            user_pool_id: self.user_pool_id.trim().to_owned(),
            client_id: self.client_id.trim().to_owned(),
            cognito_endpoint: self.cognito_endpoint.trim().to_owned(),
            hosted_ui_domain: self
                .hosted_ui_domain
                .trim()
                .trim_end_matches('/')
                .to_owned(),
        }
    }

    /// The Cognito configuration, or what is missing.
    pub fn cognito(&self) -> Result<CognitoConfig, String> {
        let missing: Vec<&str> = [
            ("the cloud API URL", &self.api_url),
            ("the region", &self.region),
            ("the user pool id", &self.user_pool_id),
            ("the app client id", &self.client_id),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(name, _)| name)
        .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the cloud service is not set up: enter {} under Account → Cloud service",
                missing.join(", ")
            ));
        }
        for url in [
            &self.api_url,
            &self.cognito_endpoint,
            &self.hosted_ui_domain,
        ] {
            let web = url.starts_with("https://") || url.starts_with("http://");
            if !url.is_empty() && !web {
                return Err(format!("{url:?} is not an http(s) URL"));
            }
        }
        Ok(CognitoConfig {
            region: self.region.clone(),
            user_pool_id: self.user_pool_id.clone(),
            client_id: self.client_id.clone(),
            client_secret: std::env::var("SELFDIFFUSION_COGNITO_CLIENT_SECRET")
                .ok()
                .filter(|s| !s.is_empty()),
            endpoint_url: Some(self.cognito_endpoint.clone()).filter(|s| !s.is_empty()),
        })
    }

    /// The pool's hosted UI ("Log in with Google"), when its domain is set.
    pub fn hosted_ui(&self, cognito: &CognitoConfig) -> Option<HostedUi> {
        (!self.hosted_ui_domain.is_empty()).then(|| HostedUi {
            domain: self.hosted_ui_domain.clone(),
            client_id: cognito.client_id.clone(),
            client_secret: cognito.client_secret.clone(),
            port: LOOPBACK_PORT,
        })
    }
}

/// The cloud settings: saved ones, with the environment over them.
pub fn cloud(app: &AppHandle) -> CloudSettings {
    let mut settings: CloudSettings = app
        .store(STORE_FILE)
        .ok()
        .and_then(|s| s.get(CLOUD))
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    for (var, slot) in [
        ("SELFDIFFUSION_CLOUD_URL", &mut settings.api_url),
        ("SELFDIFFUSION_COGNITO_REGION", &mut settings.region),
        (
            "SELFDIFFUSION_COGNITO_USER_POOL_ID",
            &mut settings.user_pool_id,
        ),
        ("SELFDIFFUSION_COGNITO_CLIENT_ID", &mut settings.client_id),
        (
            "SELFDIFFUSION_COGNITO_ENDPOINT",
            &mut settings.cognito_endpoint,
        ),
        (
            "SELFDIFFUSION_COGNITO_DOMAIN",
            &mut settings.hosted_ui_domain,
        ),
    ] {
        if let Ok(v) = std::env::var(var) {
            *slot = v;
        }
    }
    settings.trimmed()
}

/// Saves the cloud settings.
pub fn set_cloud(app: &AppHandle, settings: &CloudSettings) -> anyhow::Result<()> {
    let store = app.store(STORE_FILE)?;
    store.set(CLOUD, serde_json::to_value(settings)?);
    store.save()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::CloudSettings;

    fn full() -> CloudSettings {
        CloudSettings {
            api_url: " https://gen.example.com/ ".into(),
            region: "eu-west-1".into(),
            user_pool_id: "eu-west-1_AbC".into(),
            client_id: "client".into(),
            cognito_endpoint: String::new(),
            hosted_ui_domain: String::new(),
        }
    }

    #[test]
    fn a_complete_service_becomes_a_cognito_config() {
        let settings = full().trimmed();
        assert_eq!(settings.api_url, "https://gen.example.com");
        let config = settings.cognito().unwrap();
        assert_eq!(
            (config.region.as_str(), config.user_pool_id.as_str()),
            ("eu-west-1", "eu-west-1_AbC")
        );
        assert_eq!(config.endpoint_url, None);
    }

    #[test]
    fn missing_or_malformed_settings_say_what_to_enter() {
        let err = CloudSettings::default().cognito().unwrap_err();
        assert!(
            err.contains("the cloud API URL, the region, the user pool id, the app client id"),
            "{err}"
        );
        assert!(err.contains("Account → Cloud service"), "{err}");
        let err = CloudSettings {
            api_url: "gen.example.com".into(),
            ..full()
        }
        .cognito()
        .unwrap_err();
        assert!(err.contains("not an http(s) URL"), "{err}");
    }
}
