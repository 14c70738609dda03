//! The diffusers configs of a model folder, read as they are written.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::{EngineError, Result};

/// Reads and parses a JSON config, naming the file in any error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => EngineError::MissingFile(path.to_path_buf()),
        _ => EngineError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    serde_json::from_str(&python_json(&text)).map_err(|e| EngineError::BadConfig {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// `text` with the non-finite numbers Python's `json` writes (`Infinity`, `-Infinity`, `NaN`,
/// as in a DPM++ config's `"lambda_min_clipped": -Infinity`) read as `null`, which JSON has;
/// string contents are left alone.
fn python_json(text: &str) -> std::borrow::Cow<'_, str> {
    if !["Infinity", "NaN"].iter().any(|w| text.contains(w)) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if c == '"' {
            in_string = true;
        } else if let Some(word) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|w| rest.starts_with(w))
        {
            out.push_str("null");
            rest = &rest[word.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    std::borrow::Cow::Owned(out)
}

/// `model_index.json`: which classes make up the pipeline.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelIndex {
    /// Pipeline class, e.g. `StableDiffusionPipeline`.
    #[serde(rename = "_class_name")]
    pub class_name: String,
    /// SDXL: a missing negative prompt means zero embeddings.
    #[serde(default)]
    pub force_zeros_for_empty_prompt: Option<bool>,
}

/// `text_encoder/config.json` of a `CLIPTextModel`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Number of positions.
    pub max_position_embeddings: usize,
    /// `quick_gelu` or `gelu`.
    pub hidden_act: String,
    /// Layer-norm epsilon.
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    /// Width of the text projection (`CLIPTextModelWithProjection`).
    #[serde(default)]
    pub projection_dim: Option<usize>,
}

fn default_ln_eps() -> f64 {
    1e-5
}

/// `unet/config.json` of a `UNet2DConditionModel`.
#[derive(Debug, Clone, Deserialize)]
pub struct UNetConfig {
    /// Latent channels in.
    pub in_channels: usize,
    /// Latent channels out.
    pub out_channels: usize,
    /// Channels of each block.
    pub block_out_channels: Vec<usize>,
    /// Down block types.
    pub down_block_types: Vec<String>,
    /// Up block types.
    pub up_block_types: Vec<String>,
    /// Mid block type.
    #[serde(default = "default_mid_block")]
    pub mid_block_type: Option<String>,
    /// Resnets per block.
    pub layers_per_block: usize,
    /// Heads per block (diffusers' historical name), one number or one per block.
    pub attention_head_dim: OneOrMany,
    /// Heads per block under its proper name (takes precedence when set).
    #[serde(default)]
    pub num_attention_heads: Option<OneOrMany>,
    /// Width of the text context.
    pub cross_attention_dim: usize,
    /// Group-norm groups.
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    /// Norm epsilon.
    #[serde(default = "default_ln_eps")]
    pub norm_eps: f64,
    /// Linear (SD 2.x) instead of 1×1 conv (SD 1.x) transformer projections.
    #[serde(default)]
    pub use_linear_projection: bool,
    /// Timestep embedding ordering.
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    /// Timestep embedding shift.
    #[serde(default)]
    pub freq_shift: f64,
    /// Padding of the downsamplers.
    #[serde(default = "default_one")]
    pub downsample_padding: usize,
    /// Mid block output scale.
    #[serde(default = "default_one_f")]
    pub mid_block_scale_factor: f64,
    /// Transformer layers per block, one number or one per block.
    #[serde(default)]
    pub transformer_layers_per_block: Option<OneOrMany>,
    /// Activation; only `silu` is supported.
    #[serde(default = "default_silu")]
    pub act_fn: String,
    /// Extra conditioning: `text_time` (SDXL: pooled text and size ids) or none.
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    /// Width of each size id's sinusoidal embedding (`text_time`).
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    /// Input width of the added-condition embedding: pooled text + 6 × the time-id width.
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    /// Class conditioning; unsupported here.
    #[serde(default)]
    pub class_embed_type: Option<String>,
    /// Whether input is centred; diffusers default false.
    #[serde(default)]
    pub center_input_sample: bool,
}

fn default_mid_block() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}
fn default_groups() -> usize {
    32
}
fn default_true() -> bool {
    true
}
fn default_one() -> usize {
    1
}
fn default_one_f() -> f64 {
    1.0
}
fn default_silu() -> String {
    "silu".into()
}

/// A config value given either once for all blocks or per block.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// The same for every block.
    One(usize),
    /// One per block.
    Many(Vec<usize>),
}

impl OneOrMany {
    /// The value for block `i` of `n`; `None` when a per-block list has the wrong length.
    pub fn for_block(&self, i: usize, n: usize) -> Option<usize> {
        match self {
            OneOrMany::One(v) => Some(*v),
            OneOrMany::Many(v) if v.len() == n => Some(v[i]),
            OneOrMany::Many(_) => None,
        }
    }
}

/// `vae/config.json` of an `AutoencoderKL`.
#[derive(Debug, Clone, Deserialize)]
pub struct VaeConfig {
    /// Image channels in.
    pub in_channels: usize,
    /// Image channels out.
    pub out_channels: usize,
    /// Latent channels.
    pub latent_channels: usize,
    /// Channels per block; the image is `2^(len-1)` times the latent.
    pub block_out_channels: Vec<usize>,
    /// Resnets per block.
    pub layers_per_block: usize,
    /// Group-norm groups.
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    /// Latent scale: the UNet works on `latents × scaling_factor`.
    #[serde(default = "default_vae_scale")]
    pub scaling_factor: f64,
    /// Whether a quant conv follows the encoder.
    #[serde(default = "default_true")]
    pub use_quant_conv: bool,
    /// Whether a post-quant conv precedes the decoder.
    #[serde(default = "default_true")]
    pub use_post_quant_conv: bool,
    /// Whether the VAE must run in f32 when the model runs in f16 (diffusers' SDXL pipelines
    /// upcast it then: the SDXL VAE overflows in f16).
    #[serde(default = "default_true")]
    pub force_upcast: bool,
    /// The image side the VAE was trained on (diffusers' tiles are this big); a number or
    /// `[height, width]`, of which diffusers uses the first.
    #[serde(default = "default_vae_sample_size")]
    pub sample_size: OneOrMany,
}

fn default_vae_scale() -> f64 {
    0.18215
}

fn default_vae_sample_size() -> OneOrMany {
    OneOrMany::One(32)
}

impl VaeConfig {
    /// Pixels per latent cell.
    pub fn scale_factor(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }

    /// The side, in pixels, of the tiles a tiled decode makes (`sample_size`).
    pub fn tile_side(&self) -> usize {
        match &self.sample_size {
            OneOrMany::One(side) => *side,
            OneOrMany::Many(sides) => sides.first().copied().unwrap_or(32),
        }
    }
}

/// `scheduler/scheduler_config.json` (the fields any of our schedulers read).
#[derive(Debug, Clone, Deserialize)]
pub struct SchedulerConfig {
    /// Scheduler class the model was saved with.
    #[serde(rename = "_class_name", default)]
    pub class_name: String,
    /// Training steps.
    #[serde(default = "default_train_steps")]
    pub num_train_timesteps: usize,
    /// First beta.
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    /// Last beta.
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    /// `scaled_linear` or `linear`.
    #[serde(default = "default_beta_schedule")]
    pub beta_schedule: String,
    /// `epsilon` or `v_prediction`.
    #[serde(default = "default_prediction")]
    pub prediction_type: String,
    /// `leading`, `trailing` or `linspace`.
    #[serde(default = "default_spacing")]
    pub timestep_spacing: String,
    /// Offset added to leading timesteps.
    #[serde(default)]
    pub steps_offset: usize,
    /// DDIM: use ᾱ = 1 after the last step.
    #[serde(default = "default_true")]
    pub set_alpha_to_one: bool,
}

fn default_train_steps() -> usize {
    1000
}
fn default_beta_start() -> f64 {
    0.0001
}
fn default_beta_end() -> f64 {
    0.02
}
fn default_beta_schedule() -> String {
    "linear".into()
}
fn default_prediction() -> String {
    "epsilon".into()
}
fn default_spacing() -> String {
    "linspace".into()
}

/// `tokenizer/tokenizer_config.json` (length and padding).
#[derive(Debug, Clone, Deserialize)]
pub struct TokenizerConfig {
    /// Sequence length.
    #[serde(default = "default_max_len")]
    pub model_max_length: usize,
    /// The padding token (a string, or an AddedToken object).
    #[serde(default)]
    pub pad_token: Option<serde_json::Value>,
}

fn default_max_len() -> usize {
    77
}

impl TokenizerConfig {
    /// The pad token's text.
    pub fn pad_token_text(&self) -> Option<String> {
        match &self.pad_token {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Object(o)) => {
                o.get("content").and_then(|c| c.as_str()).map(str::to_owned)
            }
            _ => None,
        }
    }
}

/// The files of one component of a model folder.
#[derive(Debug, Clone)]
pub struct Component {
    /// The component folder.
    pub dir: PathBuf,
}

impl Component {
    /// The weights file: the full-precision one when present, else the `fp16` variant.
    pub fn weights(&self, stem: &str) -> Result<PathBuf> {
        let full = self.dir.join(format!("{stem}.safetensors"));
        let half = self.dir.join(format!("{stem}.fp16.safetensors"));
        if full.is_file() {
            Ok(full)
        } else if half.is_file() {
            Ok(half)
        } else {
            Err(EngineError::MissingFile(full))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_non_finite_numbers_read_as_null_outside_strings() {
        let text = r#"{"lambda_min_clipped": -Infinity, "x": [NaN, Infinity], "name": "NaN \"-Infinity\""}"#;
        let v: serde_json::Value = serde_json::from_str(&python_json(text)).unwrap();
        assert!(v["lambda_min_clipped"].is_null());
        assert_eq!(v["x"], serde_json::json!([null, null]));
        assert_eq!(v["name"], "NaN \"-Infinity\"");
        assert!(matches!(
            python_json("{\"a\": 1}"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
