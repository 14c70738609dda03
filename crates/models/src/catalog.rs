//! The catalog of known models, kept as data in `catalog.json`.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Recommended generation settings for a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Defaults {
    /// Image width.
    pub width: u32,
    /// Image height.
    pub height: u32,
    /// Denoising steps.
    pub steps: u32,
    /// Guidance scale.
    pub guidance: f64,
    /// Scheduler name.
    pub scheduler: String,
}

/// One file of a model's Hub repo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogFile {
    /// Path inside the repo.
    pub path: String,
    /// Size in bytes, where known (else the Hub's LFS size is checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// SHA-256, where known (else the Hub's LFS hash is checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A model the app knows how to fetch and run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogModel {
    /// Short id, e.g. `sd-1.5`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Hub repo, `org/name`.
    pub repo: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// One line for users.
    pub description: String,
    /// The files to fetch.
    pub files: Vec<CatalogFile>,
    /// Approximate download size, for display before the exact sizes are known.
    pub approx_bytes: u64,
    /// Recommended settings.
    pub defaults: Defaults,
}

/// The catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Known models, the default first.
    pub models: Vec<CatalogModel>,
}

impl Catalog {
    /// The catalog shipped with the app.
    pub fn builtin() -> Catalog {
        serde_json::from_str(include_str!("../catalog.json"))
            .expect("the built-in catalog is valid JSON")
    }

    /// A model by id.
    pub fn get(&self, id: &str) -> Result<&CatalogModel> {
        self.models
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| ModelError::UnknownModel(id.to_owned()))
    }

    /// The model offered first to new users.
    pub fn default_model(&self) -> &CatalogModel {
        &self.models[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_has_the_five_models_with_defaults() {
        let c = Catalog::builtin();
        let ids: Vec<&str> = c.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            ["sd-1.5", "sd-2.1", "sd-turbo", "sdxl-1.0", "sdxl-turbo"]
        );
        assert_eq!(c.default_model().id, "sd-1.5");
        let turbo = c.get("sd-turbo").unwrap();
        assert_eq!((turbo.defaults.steps, turbo.defaults.guidance), (1, 0.0));
        for m in &c.models {
            assert!(m.files.iter().any(|f| f.path == "model_index.json"));
            assert!(m
                .files
                .iter()
                .any(|f| f.path.starts_with("unet/") && f.path.ends_with(".safetensors")));
        }
        let xl = c.get("sdxl-1.0").unwrap();
        assert_eq!((xl.defaults.width, xl.defaults.height), (1024, 1024));
        let turbo = c.get("sdxl-turbo").unwrap();
        assert_eq!((turbo.defaults.steps, turbo.defaults.guidance), (1, 0.0));
        for m in [xl, turbo] {
            for part in ["text_encoder_2/", "tokenizer_2/"] {
                assert!(m.files.iter().any(|f| f.path.starts_with(part)), "{part}");
            }
        }
        assert!(matches!(c.get("sdxl"), Err(ModelError::UnknownModel(_))));
    }
}
