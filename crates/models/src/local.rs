//! Model folders the user imported from disk, remembered in a small JSON registry.

use selfdiffusion_files::Access;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{IoPath, ModelError, Result};

/// Pipeline classes the engine runs.
const SUPPORTED: &[&str] = &[
    "StableDiffusionPipeline",
    "StableDiffusionImg2ImgPipeline",
    "StableDiffusionInpaintPipeline",
    "StableDiffusionXLPipeline",
    "StableDiffusionXLImg2ImgPipeline",
    "StableDiffusionXLInpaintPipeline",
];

/// An imported model folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalModel {
    /// Id, `local:<folder name>` (made unique).
    pub id: String,
    /// Display name.
    pub name: String,
    /// The folder, or the single-file checkpoint.
    pub path: PathBuf,
    /// For a single-file checkpoint: the diffusers folder of its configs and tokenizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
}

/// The registry of imported folders.
#[derive(Debug)]
pub struct LocalModels {
    file: PathBuf,
}

impl LocalModels {
    /// The registry stored in `file` (created on first import).
    pub fn new(file: impl Into<PathBuf>) -> Self {
        LocalModels { file: file.into() }
    }

    /// The registry in the OS data dir (`SelfDiffusion/models.json`).
    pub fn default_location() -> Option<Self> {
        dirs::data_dir().map(|d| Self::new(d.join("SelfDiffusion").join("models.json")))
    }

    /// Where the engine's built-in configs are written as folders (`SelfDiffusion/configs` in
    /// the OS data dir).
    pub fn builtin_configs_root() -> Option<PathBuf> {
        dirs::data_dir().map(|d| d.join("SelfDiffusion").join("configs"))
    }

    /// Every imported model.
    pub fn list(&self) -> Result<Vec<LocalModel>> {
        match std::fs::read_to_string(&self.file) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| ModelError::NotAModel {
                path: self.file.clone(),
                reason: format!("the registry is damaged ({e}); fix or delete it"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).at(&self.file),
        }
    }

    /// Checks that `folder` is a diffusers Stable Diffusion folder and remembers it.
    pub fn import(&self, folder: &Path) -> Result<LocalModel> {
        let path = std::fs::canonicalize(folder).at(folder)?;
        check_folder(&path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        self.register(path, None, name)
    }

    /// Remembers the single-file checkpoint `file` (used in place, not copied) with the diffusers
    /// folder `config` of its configs and tokenizer. The caller has checked the file is a
    /// checkpoint the engine reads (the engine's `Checkpoint::open`).
    pub fn import_checkpoint(&self, file: &Path, config: &Path) -> Result<LocalModel> {
        let path = std::fs::canonicalize(file).at(file)?;
        if path.extension().is_none_or(|e| e != "safetensors") {
            return Err(ModelError::NotAModel {
                path,
                reason: "a single-file checkpoint is imported as .safetensors".into(),
            });
        }
        let config = std::fs::canonicalize(config).at(config)?;
        check_folder(&config)?;
        let name = path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        self.register(path, Some(config), name)
    }

    /// Forgets the imported model `id` (its files stay where they are); returns it.
    pub fn remove(&self, id: &str) -> Result<LocalModel> {
        let mut models = self.list()?;
        let index = models
            .iter()
            .position(|m| m.id == id)
            .ok_or_else(|| ModelError::UnknownModel(id.to_owned()))?;
        let removed = models.remove(index);
        self.write(&models)?;
        Ok(removed)
    }

    fn write(&self, models: &[LocalModel]) -> Result<()> {
        let body = serde_json::to_string_pretty(models).expect("models serialise");
        selfdiffusion_files::write_atomic(&self.file, body.as_bytes(), Access::Default)
            .at(&self.file)
    }

    /// Adds a model to the registry (once per path), written atomically.
    fn register(&self, path: PathBuf, config: Option<PathBuf>, name: String) -> Result<LocalModel> {
        let mut models = self.list()?;
        if let Some(existing) = models.iter().find(|m| m.path == path) {
            return Ok(existing.clone());
        }
        let mut id = format!("local:{name}");
        let mut n = 2;
        while models.iter().any(|m| m.id == id) {
            id = format!("local:{name}-{n}");
            n += 1;
        }
        let model = LocalModel {
            id,
            name,
            path,
            config,
        };
        models.push(model.clone());
        self.write(&models)?;
        Ok(model)
    }
}

/// A diffusers folder of a supported pipeline with the components the engine loads.
pub fn check_folder(path: &Path) -> Result<()> {
    let not = |reason: String| ModelError::NotAModel {
        path: path.to_path_buf(),
        reason,
    };
    let index = std::fs::read_to_string(path.join("model_index.json"))
        .map_err(|_| not("no model_index.json: not a diffusers model folder".into()))?;
    let index: serde_json::Value =
        serde_json::from_str(&index).map_err(|e| not(format!("model_index.json: {e}")))?;
    let class = index
        .get("_class_name")
        .and_then(|c| c.as_str())
        .unwrap_or("");
    if !SUPPORTED.contains(&class) {
        return Err(not(format!(
            "{class:?} is not supported; supported kinds: Stable Diffusion 1.x, 2.x, XL and their Turbo models ({})",
            SUPPORTED.join(", ")
        )));
    }
    let xl: &[&str] = if class.starts_with("StableDiffusionXL") {
        &["text_encoder_2", "tokenizer_2"]
    } else {
        &[]
    };
    for component in ["unet", "vae", "text_encoder", "tokenizer", "scheduler"]
        .iter()
        .chain(xl)
    {
        if !path.join(component).is_dir() {
            return Err(not(format!("the {component} folder is missing")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder that passes `check_folder` (no weights needed for the registry).
    fn folder(dir: &Path) -> PathBuf {
        let model = dir.join("dreamy");
        for part in ["unet", "vae", "text_encoder", "tokenizer", "scheduler"] {
            std::fs::create_dir_all(model.join(part)).unwrap();
        }
        std::fs::write(
            model.join("model_index.json"),
            r#"{"_class_name": "StableDiffusionPipeline"}"#,
        )
        .unwrap();
        model
    }

    #[test]
    fn sdxl_folders_need_their_second_text_encoder() {
        let dir = tempfile::tempdir().unwrap();
        let model = folder(dir.path());
        std::fs::write(
            model.join("model_index.json"),
            r#"{"_class_name": "StableDiffusionXLPipeline"}"#,
        )
        .unwrap();
        std::fs::create_dir(model.join("tokenizer_2")).unwrap();
        let err = check_folder(&model).unwrap_err().to_string();
        assert!(err.contains("text_encoder_2 folder is missing"), "{err}");
        std::fs::create_dir(model.join("text_encoder_2")).unwrap();
        check_folder(&model).unwrap();
    }

    #[test]
    fn checkpoints_are_remembered_with_their_config_and_forgotten_without_touching_files() {
        let dir = tempfile::tempdir().unwrap();
        let registry = LocalModels::new(dir.path().join("models.json"));
        let config = folder(dir.path());
        let file = dir.path().join("dreamy-v1.safetensors");
        std::fs::write(&file, b"weights").unwrap();

        let model = registry.import_checkpoint(&file, &config).unwrap();
        assert_eq!(model.id, "local:dreamy-v1");
        assert_eq!(
            model.config.as_deref(),
            Some(config.canonicalize().unwrap().as_path())
        );
        assert_eq!(
            registry.import_checkpoint(&file, &config).unwrap(),
            model,
            "once"
        );
        let other = dir.path().join("x.ckpt");
        std::fs::write(&other, b"PK").unwrap();
        assert!(registry.import_checkpoint(&other, &config).is_err());
        assert!(
            registry.import_checkpoint(&file, dir.path()).is_err(),
            "no configs there"
        );

        assert_eq!(registry.remove(&model.id).unwrap(), model);
        assert!(registry.list().unwrap().is_empty());
        assert!(file.exists(), "the file stays");
        assert!(matches!(
            registry.remove(&model.id),
            Err(ModelError::UnknownModel(_))
        ));
    }
}
