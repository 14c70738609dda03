//! Where the cloud service is — the generation API, the Cognito user pool and its hosted UI —
//! as the app saves it and as the environment names it (over what was saved; the CLI's only
//! source).

use serde::{Deserialize, Serialize};

use crate::accounts::CognitoConfig;
use crate::hosted_ui::{HostedUi, LOOPBACK_PORT};

/// The variables that name the service, in the order of [`CloudSettings`]' fields.
const ENV: [&str; 6] = [
    "SELFDIFFUSION_CLOUD_URL",
    "SELFDIFFUSION_COGNITO_REGION",
    "SELFDIFFUSION_COGNITO_USER_POOL_ID",
    "SELFDIFFUSION_COGNITO_CLIENT_ID",
    "SELFDIFFUSION_COGNITO_ENDPOINT",
    "SELFDIFFUSION_COGNITO_DOMAIN",
];

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
                "the cloud service is not set up: enter {} under Account → Cloud service (or \
                 set SELFDIFFUSION_CLOUD_URL and the SELFDIFFUSION_COGNITO_* variables)",
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

impl CloudSettings {
    /// These settings with the environment's over them (`SELFDIFFUSION_CLOUD_URL`,
    /// `SELFDIFFUSION_COGNITO_REGION`, `…_USER_POOL_ID`, `…_CLIENT_ID`, `…_ENDPOINT`,
    /// `…_DOMAIN`), trimmed.
    pub fn with_env(mut self) -> Self {
        let slots = [
            &mut self.api_url,
            &mut self.region,
            &mut self.user_pool_id,
            &mut self.client_id,
            &mut self.cognito_endpoint,
            &mut self.hosted_ui_domain,
        ];
        for (var, slot) in ENV.into_iter().zip(slots) {
            if let Ok(v) = std::env::var(var) {
                *slot = v;
            }
        }
        self.trimmed()
    }
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
