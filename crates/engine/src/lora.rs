//! LoRAs: low-rank weight changes in the kohya / AUTOMATIC1111 layout (`lora_unet_*`,
//! `lora_te_*`, `.alpha`, LoCon convs) or the diffusers / PEFT one (`lora_A` / `lora_B`), merged
//! into the weights as they load (W += w·(α/r)·up·down), so generation runs at the base model's
//! speed. Every module of a LoRA must find its layer: one that fits nothing is an error that names
//! it, never silently dropped.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use selfdiffusion_recipe::LoraUse;
use sha2::{Digest, Sha256};

use crate::config::UNetConfig;
use crate::error::{EngineError, Result};
use crate::single_file::{unet_key, Family};
use crate::weights_file::WeightsFile;

/// The model part a LoRA module changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// The denoising UNet.
    Unet,
    /// The (first) CLIP text encoder.
    TextEncoder,
    /// SDXL's second text encoder (OpenCLIP-bigG).
    TextEncoder2,
}

/// One adapted layer: `down` [r, in, …], `up` [out, r, …], and its alpha.
#[derive(Debug, Clone)]
struct Module {
    /// The name in the file, for errors.
    key: String,
    down: Tensor,
    up: Tensor,
    alpha: f64,
}

impl Module {
    /// The weight change at adapter weight `weight`, shaped like `like`.
    fn delta(&self, weight: f64, like: &Shape) -> candle_core::Result<Tensor> {
        let rank = self.down.dim(0)?;
        let scale = weight * self.alpha / rank as f64;
        let up = self.up.flatten_from(1)?;
        let down = self.down.flatten_from(1)?;
        (up.matmul(&down)? * scale)?.reshape(like.clone())
    }
}

/// A LoRA file, parsed: its modules by part and layer (the layer's dotted path with `_` for
/// `.`, which is how kohya names them).
#[derive(Debug)]
pub struct LoraFile {
    path: PathBuf,
    hash: String,
    modules: BTreeMap<(Part, String), Module>,
}

/// The tensors of one module as they are read from the file.
#[derive(Default)]
struct Pieces {
    /// The first of its names met, for errors.
    key: String,
    down: Option<Tensor>,
    up: Option<Tensor>,
    alpha: Option<f64>,
}

fn bad(path: &Path, reason: impl Into<String>) -> EngineError {
    EngineError::Lora {
        file: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The part and layer a tensor name of a LoRA file belongs to, and which of its tensors it is.
fn classify(name: &str) -> Option<(Part, String, &'static str)> {
    let (stem, tensor) = [
        (".lora_down.weight", "down"),
        (".lora_up.weight", "up"),
        (".lora_A.weight", "down"),
        (".lora_B.weight", "up"),
        (".alpha", "alpha"),
    ]
    .iter()
    .find_map(|(suffix, what)| name.strip_suffix(suffix).map(|s| (s, *what)))?;
    let (part, layer) = if let Some(l) = stem.strip_prefix("lora_unet_") {
        (Part::Unet, l.to_owned())
    } else if let Some(l) = stem
        .strip_prefix("lora_te_")
        .or_else(|| stem.strip_prefix("lora_te1_"))
    {
        (Part::TextEncoder, l.to_owned())
    } else if let Some(l) = stem.strip_prefix("lora_te2_") {
        (Part::TextEncoder2, l.to_owned())
    } else if let Some(l) = stem.strip_prefix("unet.") {
        (Part::Unet, l.replace('.', "_"))
    } else if let Some(l) = stem.strip_prefix("text_encoder.") {
        (Part::TextEncoder, l.replace('.', "_"))
    } else if let Some(l) = stem.strip_prefix("text_encoder_2.") {
        (Part::TextEncoder2, l.replace('.', "_"))
    } else {
        return None;
    };
    let layer = match part {
        Part::TextEncoder | Part::TextEncoder2 => layer
            .strip_prefix("text_model_")
            .map(str::to_owned)
            .unwrap_or(layer),
        Part::Unet => layer,
    };
    Some((part, layer, tensor))
}

impl LoraFile {
    /// Reads a LoRA `.safetensors` file into memory (LoRAs are small).
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(EngineError::MissingFile(path.to_path_buf()));
        }
        let bytes = std::fs::read(path).map_err(|e| EngineError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| bad(path, format!("not a readable .safetensors file: {e}")))?;
        let hash = short_hash(&bytes);
        if tensors
            .keys()
            .any(|k| k.starts_with("model.diffusion_model.") || k.starts_with("first_stage_model."))
        {
            return Err(bad(
                path,
                "this is a checkpoint, not a LoRA: use it as the model",
            ));
        }
        let mut pieces: BTreeMap<(Part, String), Pieces> = BTreeMap::new();
        for (name, tensor) in &tensors {
            let Some((part, layer, what)) = classify(name) else {
                return Err(bad(
                    path,
                    format!("{name} is not a LoRA tensor this engine reads (kohya lora_down/lora_up/alpha or PEFT lora_A/lora_B)"),
                ));
            };
            let entry = pieces.entry((part, layer)).or_insert_with(|| Pieces {
                key: name.clone(),
                ..Pieces::default()
            });
            let tensor = tensor.to_dtype(DType::F32)?;
            match what {
                "down" => entry.down = Some(tensor),
                "up" => entry.up = Some(tensor),
                _ => entry.alpha = Some(f64::from(tensor.to_scalar::<f32>()?)),
            }
        }
        let mut modules = BTreeMap::new();
        for (
            id,
            Pieces {
                key,
                down,
                up,
                alpha,
            },
        ) in pieces
        {
            let (Some(down), Some(up)) = (down, up) else {
                return Err(bad(
                    path,
                    format!("{key}: the module lacks its down or up matrix"),
                ));
            };
            let rank = down.dim(0)?;
            if up.dim(1)? != rank {
                return Err(bad(
                    path,
                    format!("{key}: up has rank {} but down has rank {rank}", up.dim(1)?),
                ));
            }
            let alpha = alpha.unwrap_or(rank as f64);
            modules.insert(
                id,
                Module {
                    key,
                    down,
                    up,
                    alpha,
                },
            );
        }
        if modules.is_empty() {
            return Err(bad(path, "the file holds no LoRA modules"));
        }
        Ok(LoraFile {
            path: path.to_path_buf(),
            hash,
            modules,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its name: the file name without extension, as `<lora:name:weight>` names it.
    pub fn name(&self) -> String {
        self.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// AUTOMATIC1111's short hash: the first 12 hex digits of the SHA-256 of the tensor data
    /// (the file after its header), so other tools recognise the LoRA.
    pub fn short_hash(&self) -> &str {
        &self.hash
    }
}

/// The family a LoRA file fits, from its tensor names and shapes alone (the header is read,
/// no weights): modules of a second text encoder mean SDXL; otherwise the width of the text its
/// layers read (the UNet's cross-attention keys and values, the text encoder's attention): 768
/// for SD 1.x, 1024 for SD 2.x, 2048 (UNet) or 1280 (second encoder) for SDXL. `None` when no
/// module tells.
pub fn lora_family(path: &Path) -> Result<Option<Family>> {
    let tensors = WeightsFile::open(path)
        .map_err(|e| bad(path, format!("not a readable .safetensors file: {e}")))?;
    let mut found = None;
    for (name, info) in tensors.tensors() {
        let Some((part, layer, "down")) = classify(&name) else {
            continue;
        };
        let width = info.shape.get(1).copied();
        let family = match part {
            Part::TextEncoder2 => Some(Family::Sdxl),
            Part::Unet if layer.ends_with("attn2_to_k") || layer.ends_with("attn2_to_v") => {
                match width {
                    Some(768) => Some(Family::Sd1),
                    Some(1024) => Some(Family::Sd2),
                    Some(2048) => Some(Family::Sdxl),
                    _ => None,
                }
            }
            Part::TextEncoder if layer.ends_with("self_attn_q_proj") => match width {
                Some(768) => Some(Family::Sd1),
                Some(1024) => Some(Family::Sd2),
                _ => None,
            },
            _ => None,
        };
        match (part, family) {
            // CLIP-L is SD 1.x's encoder, or SDXL's first: the UNet or a second encoder may
            // still say SDXL.
            (Part::TextEncoder, Some(Family::Sd1)) => found = family,
            (_, Some(f)) => return Ok(Some(f)),
            _ => {}
        }
    }
    Ok(found)
}

fn short_hash(bytes: &[u8]) -> String {
    let header = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .unwrap_or(0);
    let data = bytes.get(8 + header..).unwrap_or_default();
    let digest = Sha256::digest(data);
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// LoRAs to apply, each at its own weight (negative weights subtract).
#[derive(Debug, Clone, Default)]
pub struct Loras {
    entries: Vec<(Arc<LoraFile>, f64)>,
    used: Arc<Mutex<HashSet<(usize, Part, String)>>>,
}

impl Loras {
    /// `files`, each at its weight.
    pub fn new(files: Vec<(Arc<LoraFile>, f64)>) -> Self {
        Loras {
            entries: files,
            used: Arc::default(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The LoRAs as a recipe records them.
    pub fn uses(&self) -> Vec<LoraUse> {
        self.entries
            .iter()
            .map(|(file, weight)| LoraUse {
                name: file.name(),
                weight: *weight,
                hash: Some(file.short_hash().to_owned()),
            })
            .collect()
    }

    /// `base` with these LoRAs merged into the weights of `part` as they load.
    pub(crate) fn wrap(&self, part: Part, base: Box<dyn SimpleBackend>) -> Box<dyn SimpleBackend> {
        self.wrap_with(part, base, None)
    }

    /// `base` (a UNet built from `config`) with these LoRAs merged into its weights as they
    /// load, whether the LoRAs name its layers the diffusers way or the original way.
    pub(crate) fn wrap_unet(
        &self,
        base: Box<dyn SimpleBackend>,
        config: &UNetConfig,
    ) -> Box<dyn SimpleBackend> {
        self.wrap_with(Part::Unet, base, Some(config.clone()))
    }

    fn wrap_with(
        &self,
        part: Part,
        base: Box<dyn SimpleBackend>,
        unet: Option<UNetConfig>,
    ) -> Box<dyn SimpleBackend> {
        if self.is_empty() {
            return base;
        }
        Box::new(Merged {
            base,
            part,
            loras: self.clone(),
            unet,
        })
    }

    /// After the model loaded: the first module of a LoRA that changed no layer is an error
    /// naming it (an SDXL LoRA on SD 1.5, a LoRA for another architecture).
    pub(crate) fn check_all_used(&self) -> Result<()> {
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        for (i, (file, _)) in self.entries.iter().enumerate() {
            for ((part, layer), module) in &file.modules {
                if !used.contains(&(i, *part, layer.clone())) {
                    let hint = if file.modules.keys().any(|(p, _)| *p == Part::TextEncoder2) {
                        "it is a Stable Diffusion XL LoRA (it changes a second text encoder)"
                    } else {
                        "is the LoRA for another model family?"
                    };
                    return Err(bad(
                        &file.path,
                        format!(
                            "{} does not fit this model (no such layer); {hint}",
                            module.key
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A component's weights with LoRAs merged in.
struct Merged {
    base: Box<dyn SimpleBackend>,
    part: Part,
    loras: Loras,
    /// The UNet's config, to find a layer under its original (LDM) name too: kohya's SDXL LoRAs
    /// name UNet layers as `lora_unet_input_blocks_4_1_…`.
    unet: Option<UNetConfig>,
}

impl Merged {
    /// The names a weight's layer may have in LoRA files: its diffusers name, and for the UNet
    /// its original one.
    fn layers(&self, name: &str) -> Vec<String> {
        let Some(module) = name.strip_suffix(".weight") else {
            return Vec::new();
        };
        let module = match self.part {
            Part::TextEncoder | Part::TextEncoder2 => {
                module.strip_prefix("text_model.").unwrap_or(module)
            }
            Part::Unet => module,
        };
        let mut names = vec![module.replace('.', "_")];
        if let Some(ldm) = self.unet.as_ref().and_then(|c| unet_key(name, c)) {
            let ldm = ldm.strip_prefix("model.diffusion_model.").unwrap_or(&ldm);
            if let Some(ldm) = ldm.strip_suffix(".weight") {
                names.push(ldm.replace('.', "_"));
            }
        }
        names
    }

    /// `tensor` (the base weight `name`) with the LoRAs that change it added, in f32, back in
    /// its own dtype; a weight no LoRA changes is returned as it is.
    fn merge(&self, name: &str, tensor: Tensor) -> candle_core::Result<Tensor> {
        let layers = self.layers(name);
        let dtype = tensor.dtype();
        let mut merged: Option<Tensor> = None;
        for (i, (file, weight)) in self.loras.entries.iter().enumerate() {
            let Some((layer, module)) = layers.iter().find_map(|layer| {
                let module = file.modules.get(&(self.part, layer.clone()))?;
                Some((layer, module))
            }) else {
                continue;
            };
            let delta = module.delta(*weight, tensor.shape()).map_err(|e| {
                candle_core::Error::Msg(format!(
                    "{}: {} does not fit {name} {:?}: {e}",
                    file.path.display(),
                    module.key,
                    tensor.dims()
                ))
            })?;
            let delta = delta.to_device(tensor.device())?;
            let base = match merged.take() {
                Some(t) => t,
                None => tensor.to_dtype(DType::F32)?,
            };
            merged = Some((base + delta)?);
            self.loras
                .used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((i, self.part, layer.clone()));
        }
        match merged {
            Some(t) => t.to_dtype(dtype),
            None => Ok(tensor),
        }
    }
}

impl SimpleBackend for Merged {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.merge(name, self.base.get(shape, name, init, dtype, dev)?)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.merge(name, self.base.get_unchecked(name, dtype, dev)?)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.base.contains_tensor(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_family_comes_from_the_text_width_its_layers_read() {
        let dir = tempfile::tempdir().unwrap();
        let zeros = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
        let file = |name: &str, tensors: Vec<(&str, Tensor)>| {
            let path = dir.path().join(name);
            let map: std::collections::HashMap<String, Tensor> = tensors
                .into_iter()
                .map(|(k, t)| (k.to_owned(), t))
                .collect();
            candle_core::safetensors::save(&map, &path).unwrap();
            path
        };
        let attn2 = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k";
        let q_proj = "lora_te_text_model_encoder_layers_0_self_attn_q_proj";
        for (width, family) in [
            (768, Some(Family::Sd1)),
            (1024, Some(Family::Sd2)),
            (2048, Some(Family::Sdxl)),
            (16, None),
        ] {
            let path = file(
                "unet.safetensors",
                vec![(&format!("{attn2}.lora_down.weight"), zeros(&[4, width]))],
            );
            assert_eq!(lora_family(&path).unwrap(), family, "UNet context {width}");
        }
        let te_only = file(
            "te.safetensors",
            vec![(&format!("{q_proj}.lora_down.weight"), zeros(&[4, 1024]))],
        );
        assert_eq!(lora_family(&te_only).unwrap(), Some(Family::Sd2));
        // CLIP-L's modules with a second encoder's: SDXL, whichever comes first in the file.
        let xl = file(
            "xl.safetensors",
            vec![
                (
                    "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
                    zeros(&[4, 768]),
                ),
                (
                    "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight",
                    zeros(&[4, 1280]),
                ),
            ],
        );
        assert_eq!(lora_family(&xl).unwrap(), Some(Family::Sdxl));
        let clip_l = file(
            "clip_l.safetensors",
            vec![(&format!("{q_proj}.lora_down.weight"), zeros(&[4, 768]))],
        );
        assert_eq!(lora_family(&clip_l).unwrap(), Some(Family::Sd1));
    }

    #[test]
    fn names_of_both_layouts_meet_on_the_kohya_form() {
        assert_eq!(
            classify("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.lora_up.weight"),
            Some((Part::Unet, "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0".into(), "up"))
        );
        assert_eq!(
            classify(
                "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_A.weight"
            ),
            Some((
                Part::Unet,
                "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0".into(),
                "down"
            ))
        );
        assert_eq!(
            classify("lora_te_text_model_encoder_layers_0_self_attn_k_proj.alpha"),
            Some((
                Part::TextEncoder,
                "encoder_layers_0_self_attn_k_proj".into(),
                "alpha"
            ))
        );
        assert_eq!(
            classify("text_encoder.text_model.encoder.layers.1.mlp.fc1.lora_B.weight"),
            Some((Part::TextEncoder, "encoder_layers_1_mlp_fc1".into(), "up"))
        );
        assert_eq!(classify("lora_unet_x.hada_w1_a"), None);
    }

    #[test]
    fn the_delta_is_weight_times_alpha_over_rank_times_up_down() {
        let dev = Device::Cpu;
        let module = Module {
            key: "k".into(),
            down: Tensor::new(&[[1f32, 2.], [3., 4.]], &dev).unwrap(),
            up: Tensor::new(&[[1f32, 0.], [0., 1.], [1., 1.]], &dev).unwrap(),
            alpha: 1.0,
        };
        let delta = module.delta(0.5, &Shape::from((3, 2))).unwrap();
        // 0.5 · (1/2) · up @ down
        assert_eq!(
            delta.to_vec2::<f32>().unwrap(),
            [[0.25, 0.5], [0.75, 1.0], [1.0, 1.5]]
        );
    }
}
