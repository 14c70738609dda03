//! Single-file checkpoints: the original LDM / CompVis / SGM layout that AUTOMATIC1111, ComfyUI
//! and model sites use (`model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.*`,
//! `conditioner.embedders.{0,1}.*`). OpenCLIP text encoders (SD 2.x, SDXL's second) keep q, k and
//! v in one `in_proj` matrix, which is split as each is asked for.
//! The family is told from the keys; the weights are read straight from the file a tensor at a
//! time, each diffusers name translated to the file's as the model asks for it, so there is no
//! converted copy on disk and no second copy in memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

use crate::config::{UNetConfig, VaeConfig};
use crate::error::{EngineError, Result};
use crate::weights_file::{expect_shape, WeightsFile};

/// What a `.safetensors` file holds, told from its tensor names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Stable Diffusion 1.x (CLIP ViT-L text encoder under `cond_stage_model.transformer`).
    Sd1,
    /// Stable Diffusion 2.x (OpenCLIP text encoder under `cond_stage_model.model`).
    Sd2,
    /// Stable Diffusion XL (two text encoders under `conditioner.embedders`).
    Sdxl,
}

impl Family {
    /// The family's name as people know it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Sd1 => "Stable Diffusion 1.x",
            Family::Sd2 => "Stable Diffusion 2.x",
            Family::Sdxl => "Stable Diffusion XL",
        }
    }
}

/// A checkpoint file, opened once and shared by the components that read from it.
#[derive(Clone)]
pub struct Checkpoint {
    file: PathBuf,
    tensors: Arc<WeightsFile>,
    family: Family,
}

fn refused(file: &Path, reason: impl Into<String>) -> EngineError {
    EngineError::Weights {
        file: file.to_path_buf(),
        reason: reason.into(),
    }
}

impl Checkpoint {
    /// Opens `file` and tells its family; anything that is not a Stable Diffusion checkpoint in
    /// the original layout is refused with what it looks like instead.
    pub fn open(file: &Path) -> Result<Self> {
        if !file.is_file() {
            return Err(EngineError::MissingFile(file.to_path_buf()));
        }
        if is_pickle(file) {
            return Err(refused(
                file,
                "a PyTorch pickle checkpoint (.ckpt / .pt / .bin): SelfDiffusion never runs pickle code, which can run anything; convert it to .safetensors (for example with diffusers' convert_original_stable_diffusion_to_diffusers.py, or download the .safetensors release)",
            ));
        }
        let tensors = WeightsFile::open(file).map_err(|e| {
            refused(
                file,
                format!("not a readable .safetensors file (truncated or damaged?): {e}"),
            )
        })?;
        let names: Vec<String> = tensors.tensors().into_iter().map(|(n, _)| n).collect();
        let family = family_of(&names).map_err(|reason| refused(file, reason))?;
        for (name, info) in tensors.tensors() {
            let float = matches!(
                info.dtype,
                safetensors::Dtype::F16
                    | safetensors::Dtype::BF16
                    | safetensors::Dtype::F32
                    | safetensors::Dtype::F64
            );
            let weight = name.starts_with("model.diffusion_model.")
                || name.starts_with("first_stage_model.")
                || ((name.starts_with("cond_stage_model.") || name.starts_with("conditioner."))
                    && !name.ends_with("position_ids"));
            if weight && !float {
                return Err(refused(
                    file,
                    format!(
                        "tensor {name} is stored as {:?}; a checkpoint's weights are floating point",
                        info.dtype
                    ),
                ));
            }
        }
        Ok(Checkpoint {
            file: file.to_path_buf(),
            tensors: Arc::new(tensors),
            family,
        })
    }

    /// The file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Which Stable Diffusion it is.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The UNet's weights under their diffusers names.
    pub fn unet(&self, config: &UNetConfig) -> Box<dyn SimpleBackend> {
        let config = config.clone();
        self.component(Box::new(move |name| {
            unet_key(name, &config).map(Stored::whole)
        }))
    }

    /// The VAE's weights under their diffusers names.
    pub fn vae(&self, config: &VaeConfig) -> Box<dyn SimpleBackend> {
        let blocks = config.block_out_channels.len();
        self.component(Box::new(move |name| {
            vae_key(name, blocks).map(Stored::whole)
        }))
    }

    /// The (first) CLIP text encoder's weights under their transformers names.
    pub fn text_encoder(&self) -> Box<dyn SimpleBackend> {
        match self.family {
            Family::Sd1 => self.component(Box::new(|name| {
                Some(Stored::whole(format!(
                    "cond_stage_model.transformer.{name}"
                )))
            })),
            Family::Sd2 => self.component(Box::new(|name| {
                open_clip_key(name, "cond_stage_model.model.")
            })),
            Family::Sdxl => self.component(Box::new(|name| {
                Some(Stored::whole(format!(
                    "conditioner.embedders.0.transformer.{name}"
                )))
            })),
        }
    }

    /// SDXL's second text encoder (OpenCLIP-bigG) under its transformers names.
    pub fn text_encoder_2(&self) -> Box<dyn SimpleBackend> {
        self.component(Box::new(|name| {
            open_clip_key(name, "conditioner.embedders.1.model.")
        }))
    }

    fn component(&self, key: KeyMap) -> Box<dyn SimpleBackend> {
        Box::new(Translated {
            tensors: self.tensors.clone(),
            key,
        })
    }
}

/// Whether `file` is a PyTorch pickle (a zip archive or a bare pickle stream), whatever its
/// extension: those are refused, never unpickled.
fn is_pickle(file: &Path) -> bool {
    let mut head = Vec::with_capacity(9);
    if std::fs::File::open(file)
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 9), &mut head))
        .is_err()
    {
        return false;
    }
    // A safetensors file is an 8-byte header length, then the JSON header.
    let safetensors = head.get(8) == Some(&b'{');
    let zip = head.starts_with(b"PK\x03\x04");
    let pickle = head.first() == Some(&0x80) && head.get(1).is_some_and(|p| (2..=5).contains(p));
    !safetensors && (zip || pickle)
}

/// The family of a checkpoint with tensors `names`, or why it is not one this engine reads.
fn family_of(names: &[String]) -> std::result::Result<Family, String> {
    let any = |pred: &dyn Fn(&str) -> bool| names.iter().any(|n| pred(n));
    if any(&|n| {
        n.starts_with("lora_")
            || n.contains(".lora_A.")
            || n.contains(".lora_down.")
            || n.contains(".lora_up.")
    }) {
        return Err("this is a LoRA, not a checkpoint: add it as a LoRA to a model".into());
    }
    if any(&|n| n.contains("joint_blocks.")) {
        return Err(
            "this looks like a Stable Diffusion 3 checkpoint, which is not supported".into(),
        );
    }
    if any(&|n| n.contains("double_blocks.") || n.contains("single_blocks.")) {
        return Err("this looks like a FLUX checkpoint, which is not supported".into());
    }
    if !any(&|n| n.starts_with("model.diffusion_model.")) {
        return Err(
            "not a Stable Diffusion checkpoint in the original layout (no model.diffusion_model.* tensors); a diffusers folder is imported as a folder"
                .into(),
        );
    }
    if any(&|n| n.starts_with("conditioner.embedders.")) {
        Ok(Family::Sdxl)
    } else if any(&|n| n.starts_with("cond_stage_model.model.")) {
        Ok(Family::Sd2)
    } else if any(&|n| n.starts_with("cond_stage_model.transformer.")) {
        Ok(Family::Sd1)
    } else {
        Err("the checkpoint has a UNet but no text encoder this engine knows".into())
    }
}

/// Where a component's tensor is in the checkpoint: a stored tensor, whole or a view of it.
struct Stored {
    key: String,
    view: View,
}

/// The part of a stored tensor a component's tensor is.
#[derive(Clone, Copy)]
enum View {
    /// All of it (a VAE attention's 1×1 conv is read as the linear layer it is).
    Whole,
    /// Third `n` of its rows: q, k or v of OpenCLIP's fused `in_proj`.
    Third(usize),
    /// Transposed: OpenCLIP's `text_projection` is applied as x·P, a linear layer's weight is Pᵀ.
    Transposed,
}

impl Stored {
    fn whole(key: String) -> Self {
        Stored {
            key,
            view: View::Whole,
        }
    }
}

/// Translates a component's diffusers tensor name into where the checkpoint keeps it.
type KeyMap = Box<dyn Fn(&str) -> Option<Stored> + Send + Sync>;

/// One component's view of the checkpoint.
struct Translated {
    tensors: Arc<WeightsFile>,
    key: KeyMap,
}

impl Translated {
    /// The tensor for `name`, as stored, cut or turned to the component's layout.
    fn load(&self, name: &str, dev: &Device) -> candle_core::Result<(String, Tensor)> {
        let stored = (self.key)(name).ok_or_else(|| {
            candle_core::Error::Msg(format!("no tensor in the checkpoint for {name}")).bt()
        })?;
        let tensor = self.tensors.load(&stored.key, dev)?;
        let tensor = match stored.view {
            View::Whole => tensor,
            View::Third(n) => {
                let rows = tensor.dim(0)?;
                if rows % 3 != 0 {
                    return Err(candle_core::Error::Msg(format!(
                        "{} has {rows} rows, not q, k and v of equal size",
                        stored.key
                    ))
                    .bt());
                }
                tensor.narrow(0, n * rows / 3, rows / 3)?
            }
            View::Transposed => tensor.t()?,
        };
        Ok((stored.key, tensor))
    }
}

impl SimpleBackend for Translated {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let (key, mut tensor) = self.load(name, dev)?;
        // The VAE's attention projections are 1×1 convs in the checkpoint, linear layers here.
        if tensor.rank() == 4
            && shape.rank() == 2
            && tensor.dims()[2..] == [1, 1]
            && tensor.elem_count() == shape.elem_count()
        {
            tensor = tensor.reshape(shape.clone())?;
        }
        expect_shape(tensor, shape, &key)?
            .contiguous()?
            .to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, dev)?.1.contiguous()?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        (self.key)(name).is_some_and(|stored| self.tensors.info(&stored.key).is_some())
    }
}

/// A transformers CLIP tensor's place in an OpenCLIP text encoder stored under `prefix`
/// (SD 2.x's `cond_stage_model.model.`, SDXL's `conditioner.embedders.1.model.`).
fn open_clip_key(name: &str, prefix: &str) -> Option<Stored> {
    let p = Parts::new(name.strip_prefix("text_model.").unwrap_or(name));
    let whole = |key: String| Some((key, View::Whole));
    let (key, view) = match p.0.as_slice() {
        ["embeddings", "token_embedding", "weight"] => whole("token_embedding.weight".into())?,
        ["embeddings", "position_embedding", "weight"] => whole("positional_embedding".into())?,
        ["final_layer_norm", ..] => whole(format!("ln_final.{}", p.rest(1)))?,
        ["text_projection", "weight"] => ("text_projection".into(), View::Transposed),
        ["encoder", "layers", i, rest @ ..] => {
            let block = format!("transformer.resblocks.{i}");
            let tail = rest.last()?;
            match rest {
                ["self_attn", proj @ ("q_proj" | "k_proj" | "v_proj"), _] => {
                    let n = ["q_proj", "k_proj", "v_proj"]
                        .iter()
                        .position(|q| q == proj)?;
                    (format!("{block}.attn.in_proj_{tail}"), View::Third(n))
                }
                ["self_attn", "out_proj", _] => whole(format!("{block}.attn.out_proj.{tail}"))?,
                ["layer_norm1", _] => whole(format!("{block}.ln_1.{tail}"))?,
                ["layer_norm2", _] => whole(format!("{block}.ln_2.{tail}"))?,
                ["mlp", "fc1", _] => whole(format!("{block}.mlp.c_fc.{tail}"))?,
                ["mlp", "fc2", _] => whole(format!("{block}.mlp.c_proj.{tail}"))?,
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(Stored {
        key: format!("{prefix}{key}"),
        view,
    })
}

/// The parts of a dotted name, and the rest joined again from part `n`.
struct Parts<'a>(Vec<&'a str>);

impl<'a> Parts<'a> {
    fn new(name: &'a str) -> Self {
        Parts(name.split('.').collect())
    }
    fn rest(&self, n: usize) -> String {
        self.0.get(n..).map(|p| p.join(".")).unwrap_or_default()
    }
    fn index(&self, n: usize) -> Option<usize> {
        self.0.get(n)?.parse().ok()
    }
}

/// A UNet resnet's diffusers sub-name in the LDM layout.
fn unet_resnet(rest: &str) -> Option<String> {
    let (head, tail) = rest.split_once('.')?;
    let ldm = match head {
        "norm1" => "in_layers.0",
        "conv1" => "in_layers.2",
        "time_emb_proj" => "emb_layers.1",
        "norm2" => "out_layers.0",
        "conv2" => "out_layers.3",
        "conv_shortcut" => "skip_connection",
        _ => return None,
    };
    Some(format!("{ldm}.{tail}"))
}

/// A UNet tensor's name in the checkpoint (see the tiny-sd15-single-file fixture's README).
pub(crate) fn unet_key(name: &str, config: &UNetConfig) -> Option<String> {
    let p = Parts::new(name);
    let per_level = config.layers_per_block + 1;
    let up_has_attention = |i: usize| {
        config
            .up_block_types
            .get(i)
            .is_some_and(|t| t.contains("CrossAttn"))
    };
    let key = match p.0.as_slice() {
        ["time_embedding", "linear_1", ..] => format!("time_embed.0.{}", p.rest(2)),
        ["time_embedding", "linear_2", ..] => format!("time_embed.2.{}", p.rest(2)),
        ["add_embedding", "linear_1", ..] => format!("label_emb.0.0.{}", p.rest(2)),
        ["add_embedding", "linear_2", ..] => format!("label_emb.0.2.{}", p.rest(2)),
        ["conv_in", ..] => format!("input_blocks.0.0.{}", p.rest(1)),
        ["conv_norm_out", ..] => format!("out.0.{}", p.rest(1)),
        ["conv_out", ..] => format!("out.2.{}", p.rest(1)),
        ["down_blocks", _, "resnets", _, ..] => format!(
            "input_blocks.{}.0.{}",
            1 + p.index(1)? * per_level + p.index(3)?,
            unet_resnet(&p.rest(4))?
        ),
        ["down_blocks", _, "attentions", _, ..] => format!(
            "input_blocks.{}.1.{}",
            1 + p.index(1)? * per_level + p.index(3)?,
            p.rest(4)
        ),
        ["down_blocks", _, "downsamplers", "0", "conv", ..] => format!(
            "input_blocks.{}.0.op.{}",
            (p.index(1)? + 1) * per_level,
            p.rest(5)
        ),
        ["mid_block", "resnets", k, ..] => format!(
            "middle_block.{}.{}",
            if *k == "0" { 0 } else { 2 },
            unet_resnet(&p.rest(3))?
        ),
        ["mid_block", "attentions", "0", ..] => format!("middle_block.1.{}", p.rest(3)),
        ["up_blocks", _, "resnets", _, ..] => format!(
            "output_blocks.{}.0.{}",
            p.index(1)? * per_level + p.index(3)?,
            unet_resnet(&p.rest(4))?
        ),
        ["up_blocks", _, "attentions", _, ..] => format!(
            "output_blocks.{}.1.{}",
            p.index(1)? * per_level + p.index(3)?,
            p.rest(4)
        ),
        ["up_blocks", _, "upsamplers", "0", "conv", ..] => {
            let i = p.index(1)?;
            format!(
                "output_blocks.{}.{}.conv.{}",
                i * per_level + config.layers_per_block,
                if up_has_attention(i) { 2 } else { 1 },
                p.rest(5)
            )
        }
        _ => return None,
    };
    Some(format!("model.diffusion_model.{key}"))
}

/// A VAE resnet's diffusers sub-name in the LDM layout.
fn vae_resnet(rest: &str) -> String {
    match rest.strip_prefix("conv_shortcut.") {
        Some(tail) => format!("nin_shortcut.{tail}"),
        None => rest.to_owned(),
    }
}

/// A VAE tensor's name in the checkpoint; `blocks` is the number of VAE levels (the decoder's
/// are stored in reverse order).
fn vae_key(name: &str, blocks: usize) -> Option<String> {
    let p = Parts::new(name);
    let key = match p.0.as_slice() {
        [coder @ ("encoder" | "decoder"), "conv_in" | "conv_out", ..] => {
            format!("{coder}.{}", p.rest(1))
        }
        [coder @ ("encoder" | "decoder"), "conv_norm_out", ..] => {
            format!("{coder}.norm_out.{}", p.rest(2))
        }
        ["encoder", "down_blocks", _, "resnets", _, ..] => format!(
            "encoder.down.{}.block.{}.{}",
            p.index(2)?,
            p.index(4)?,
            vae_resnet(&p.rest(5))
        ),
        ["encoder", "down_blocks", _, "downsamplers", "0", "conv", ..] => {
            format!("encoder.down.{}.downsample.conv.{}", p.index(2)?, p.rest(6))
        }
        ["decoder", "up_blocks", _, "resnets", _, ..] => format!(
            "decoder.up.{}.block.{}.{}",
            blocks.checked_sub(1 + p.index(2)?)?,
            p.index(4)?,
            vae_resnet(&p.rest(5))
        ),
        ["decoder", "up_blocks", _, "upsamplers", "0", "conv", ..] => format!(
            "decoder.up.{}.upsample.conv.{}",
            blocks.checked_sub(1 + p.index(2)?)?,
            p.rest(6)
        ),
        [coder @ ("encoder" | "decoder"), "mid_block", "resnets", _, ..] => format!(
            "{coder}.mid.block_{}.{}",
            p.index(3)? + 1,
            vae_resnet(&p.rest(4))
        ),
        [coder @ ("encoder" | "decoder"), "mid_block", "attentions", "0", part, ..] => {
            let (ldm, from) = match *part {
                "group_norm" => ("norm", 5),
                "to_q" => ("q", 5),
                "to_k" => ("k", 5),
                "to_v" => ("v", 5),
                "to_out" if p.0.get(5) == Some(&"0") => ("proj_out", 6),
                _ => return None,
            };
            format!("{coder}.mid.attn_1.{ldm}.{}", p.rest(from))
        }
        ["quant_conv" | "post_quant_conv", ..] => name.to_owned(),
        _ => return None,
    };
    Some(format!("first_stage_model.{key}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unet_config() -> UNetConfig {
        serde_json::from_value(serde_json::json!({
            "in_channels": 4, "out_channels": 4, "block_out_channels": [32, 64],
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "layers_per_block": 2, "attention_head_dim": 8, "cross_attention_dim": 32
        }))
        .unwrap()
    }

    #[test]
    fn unet_names_follow_the_ldm_layout() {
        let c = unet_config();
        let cases = [
            ("time_embedding.linear_2.bias", "time_embed.2.bias"),
            ("conv_in.weight", "input_blocks.0.0.weight"),
            (
                "down_blocks.0.resnets.1.norm1.weight",
                "input_blocks.2.0.in_layers.0.weight",
            ),
            (
                "down_blocks.0.attentions.1.proj_in.weight",
                "input_blocks.2.1.proj_in.weight",
            ),
            (
                "down_blocks.0.downsamplers.0.conv.weight",
                "input_blocks.3.0.op.weight",
            ),
            (
                "down_blocks.1.resnets.0.conv_shortcut.bias",
                "input_blocks.4.0.skip_connection.bias",
            ),
            (
                "mid_block.resnets.1.time_emb_proj.weight",
                "middle_block.2.emb_layers.1.weight",
            ),
            (
                "mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight",
                "middle_block.1.transformer_blocks.0.attn1.to_q.weight",
            ),
            (
                "up_blocks.0.resnets.2.conv2.weight",
                "output_blocks.2.0.out_layers.3.weight",
            ),
            (
                "up_blocks.0.upsamplers.0.conv.weight",
                "output_blocks.2.1.conv.weight",
            ),
            (
                "up_blocks.1.attentions.0.norm.weight",
                "output_blocks.3.1.norm.weight",
            ),
            ("conv_norm_out.bias", "out.0.bias"),
        ];
        for (diffusers, ldm) in cases {
            assert_eq!(
                unet_key(diffusers, &c).as_deref(),
                Some(format!("model.diffusion_model.{ldm}").as_str()),
                "{diffusers}"
            );
        }
        assert_eq!(unet_key("down_blocks.x.resnets.0.norm1.weight", &c), None);
    }

    #[test]
    fn vae_names_follow_the_ldm_layout_with_the_decoder_reversed() {
        let cases = [
            (
                "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
                "encoder.down.1.block.0.nin_shortcut.weight",
            ),
            (
                "encoder.down_blocks.0.downsamplers.0.conv.bias",
                "encoder.down.0.downsample.conv.bias",
            ),
            (
                "decoder.up_blocks.0.resnets.2.norm1.weight",
                "decoder.up.3.block.2.norm1.weight",
            ),
            (
                "decoder.up_blocks.2.upsamplers.0.conv.weight",
                "decoder.up.1.upsample.conv.weight",
            ),
            (
                "decoder.mid_block.resnets.1.conv2.bias",
                "decoder.mid.block_2.conv2.bias",
            ),
            (
                "encoder.mid_block.attentions.0.group_norm.weight",
                "encoder.mid.attn_1.norm.weight",
            ),
            (
                "decoder.mid_block.attentions.0.to_out.0.weight",
                "decoder.mid.attn_1.proj_out.weight",
            ),
            ("decoder.conv_norm_out.weight", "decoder.norm_out.weight"),
            ("post_quant_conv.bias", "post_quant_conv.bias"),
        ];
        for (diffusers, ldm) in cases {
            assert_eq!(
                vae_key(diffusers, 4).as_deref(),
                Some(format!("first_stage_model.{ldm}").as_str()),
                "{diffusers}"
            );
        }
    }

    #[test]
    fn families_are_told_from_the_keys() {
        let names = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        let unet = "model.diffusion_model.input_blocks.0.0.weight";
        assert_eq!(
            family_of(&names(&[unet, "cond_stage_model.transformer.text_model.x"])),
            Ok(Family::Sd1)
        );
        assert_eq!(
            family_of(&names(&[unet, "cond_stage_model.model.ln_final.weight"])),
            Ok(Family::Sd2)
        );
        assert_eq!(
            family_of(&names(&[
                unet,
                "conditioner.embedders.1.model.ln_final.weight"
            ])),
            Ok(Family::Sdxl)
        );
        let refusals = [
            (vec!["lora_unet_down_blocks_0.lora_down.weight"], "LoRA"),
            (
                vec!["model.diffusion_model.joint_blocks.0.x.weight"],
                "Stable Diffusion 3",
            ),
            (vec!["double_blocks.0.img_attn.qkv.weight"], "FLUX"),
            (vec!["encoder.layers.0.weight"], "original layout"),
        ];
        for (keys, expected) in refusals {
            let err = family_of(&names(&keys)).unwrap_err();
            assert!(err.contains(expected), "{keys:?}: {err}");
        }
    }
}
