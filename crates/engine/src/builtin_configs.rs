//! Built-in configs for single-file checkpoints, kept as data in `configs/`: the diffusers
//! configs and CLIP tokenizer of the real SD 1.5, SD 2.1 (v-prediction 768 and epsilon 512) and
//! SDXL base 1.0, so a checkpoint runs without a diffusers folder beside it. They are written
//! once as a folder (the layout every loader reads) under a root the caller picks.

use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};
use crate::single_file::{Checkpoint, Family};

/// A built-in set of configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinConfig {
    /// Stable Diffusion 1.5.
    Sd15,
    /// Stable Diffusion 2.1, 768×768, v-prediction (the likely one for an SD 2.x file).
    Sd21V,
    /// Stable Diffusion 2.1 base, 512×512, epsilon.
    Sd21Base,
    /// Stable Diffusion XL base 1.0 (also SDXL fine-tunes and SDXL-Turbo files).
    Sdxl,
}

/// The CLIP BPE every tokenizer folder gets.
const VOCAB: &str = include_str!("../configs/clip-bpe/vocab.json");
const MERGES: &str = include_str!("../configs/clip-bpe/merges.txt");

/// The files of each set, model index last (a folder with it is complete).
macro_rules! config_files {
    ($dir:literal, [$($file:literal),*]) => {
        &[$(($file, include_str!(concat!("../configs/", $dir, "/", $file)))),*]
    };
}

/// The files of an SD 1.x / 2.x set: one text encoder and tokenizer.
macro_rules! sd_files {
    ($dir:literal) => {
        config_files!(
            $dir,
            [
                "scheduler/scheduler_config.json",
                "text_encoder/config.json",
                "tokenizer/tokenizer_config.json",
                "unet/config.json",
                "vae/config.json",
                "model_index.json"
            ]
        )
    };
}

const SD15: &[(&str, &str)] = sd_files!("sd15");
const SD21_V: &[(&str, &str)] = sd_files!("sd21-v");
const SD21_BASE: &[(&str, &str)] = sd_files!("sd21-base");
const SDXL: &[(&str, &str)] = config_files!(
    "sdxl",
    [
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder_2/config.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer_2/tokenizer_config.json",
        "unet/config.json",
        "vae/config.json",
        "model_index.json"
    ]
);

impl BuiltinConfig {
    /// Every built-in set.
    pub const ALL: [BuiltinConfig; 4] = [
        BuiltinConfig::Sd15,
        BuiltinConfig::Sd21V,
        BuiltinConfig::Sd21Base,
        BuiltinConfig::Sdxl,
    ];

    /// Its id, as the CLI and the recipe name it.
    pub fn id(self) -> &'static str {
        match self {
            BuiltinConfig::Sd15 => "sd15",
            BuiltinConfig::Sd21V => "sd21-v",
            BuiltinConfig::Sd21Base => "sd21-base",
            BuiltinConfig::Sdxl => "sdxl",
        }
    }

    /// The set with id `id`, if there is one.
    pub fn parse(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.id() == id)
    }

    /// The likely set for a checkpoint of `family` (SD 2.x: the 768 v-prediction model, the
    /// common one; its 512 epsilon base is the other choice).
    pub fn for_family(family: Family) -> Self {
        match family {
            Family::Sd1 => BuiltinConfig::Sd15,
            Family::Sd2 => BuiltinConfig::Sd21V,
            Family::Sdxl => BuiltinConfig::Sdxl,
        }
    }

    /// The set a checkpoint runs with: the one named `id`, or its family's likely one. A set of
    /// another family, or an unknown id, is an error that names the file's family.
    pub fn for_checkpoint(checkpoint: &Checkpoint, id: Option<&str>) -> Result<Self> {
        let family = checkpoint.family();
        let Some(id) = id else {
            return Ok(Self::for_family(family));
        };
        let set = Self::parse(id).ok_or_else(|| {
            EngineError::Unsupported(format!(
                "no built-in configs named {id:?}; there are {}",
                Self::ALL.map(Self::id).join(", ")
            ))
        })?;
        if set.family() != family {
            return Err(EngineError::Unsupported(format!(
                "{} is a {} checkpoint; the {} configs are for {}",
                checkpoint.file().display(),
                family.name(),
                set.id(),
                set.family().name()
            )));
        }
        Ok(set)
    }

    /// The family it describes.
    pub fn family(self) -> Family {
        match self {
            BuiltinConfig::Sd15 => Family::Sd1,
            BuiltinConfig::Sd21V | BuiltinConfig::Sd21Base => Family::Sd2,
            BuiltinConfig::Sdxl => Family::Sdxl,
        }
    }

    fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            BuiltinConfig::Sd15 => SD15,
            BuiltinConfig::Sd21V => SD21_V,
            BuiltinConfig::Sd21Base => SD21_BASE,
            BuiltinConfig::Sdxl => SDXL,
        }
    }

    /// The set as a config folder under `root` (`root/<id>`), written where a file is missing
    /// or differs (each atomically, the model index last); returns the folder.
    pub fn folder(self, root: &Path) -> Result<PathBuf> {
        let dir = root.join(self.id());
        let tokenizers = self
            .files()
            .iter()
            .filter_map(|(path, _)| path.strip_suffix("/tokenizer_config.json"))
            .flat_map(|t| {
                [
                    (format!("{t}/vocab.json"), VOCAB),
                    (format!("{t}/merges.txt"), MERGES),
                ]
            });
        let files = tokenizers.chain(
            self.files()
                .iter()
                .map(|(path, text)| ((*path).to_owned(), *text)),
        );
        for (path, text) in files {
            let target = dir.join(&path);
            if std::fs::read(&target).is_ok_and(|old| old == text.as_bytes()) {
                continue;
            }
            selfdiffusion_files::write_atomic(
                &target,
                text.as_bytes(),
                selfdiffusion_files::Access::Default,
            )
            .map_err(|e| EngineError::Io {
                path: target.clone(),
                source: e,
            })?;
        }
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{read_json, UNetConfig};
    use crate::model::{family_of_configs, model_limits};
    use crate::tokenizer::PromptTokenizer;

    #[test]
    fn every_set_is_a_folder_the_loader_reads() {
        let root = tempfile::tempdir().unwrap();
        for config in BuiltinConfig::ALL {
            let dir = config.folder(root.path()).unwrap();
            assert_eq!(BuiltinConfig::parse(config.id()), Some(config));
            assert_eq!(
                family_of_configs(&dir).unwrap(),
                config.family(),
                "{config:?}"
            );
            let limits = model_limits(&dir).unwrap();
            assert_eq!(limits.side_step, 8, "{config:?}");
            let unet: UNetConfig = read_json(&dir.join("unet/config.json")).unwrap();
            crate::unet::check_config(&unet).unwrap();
            let tokenizer = PromptTokenizer::load(&dir.join("tokenizer")).unwrap();
            let ids = tokenizer.encode("a photo of a cat").unwrap().ids;
            assert_eq!(&ids[..7], [49406, 320, 1125, 539, 320, 2368, 49407]);
        }
        let xl = BuiltinConfig::Sdxl.folder(root.path()).unwrap();
        let second = PromptTokenizer::load(&xl.join("tokenizer_2")).unwrap();
        assert_eq!(second.encode("cat").unwrap().ids[3], 0, "pads with \"!\"");
    }

    #[test]
    fn a_damaged_folder_is_rewritten() {
        let root = tempfile::tempdir().unwrap();
        let dir = BuiltinConfig::Sd15.folder(root.path()).unwrap();
        std::fs::write(dir.join("unet/config.json"), "{").unwrap();
        std::fs::remove_file(dir.join("tokenizer/vocab.json")).unwrap();
        BuiltinConfig::Sd15.folder(root.path()).unwrap();
        model_limits(&dir).unwrap();
        PromptTokenizer::load(&dir.join("tokenizer")).unwrap();
    }
}
