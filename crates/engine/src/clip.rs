//! The CLIP text encoder (`CLIPTextModel`, and `CLIPTextModelWithProjection` for SDXL's second
//! encoder), built from its `config.json`. SD 1.x / 2.x read the final layer norm's output; SDXL
//! reads the penultimate layer's states and the projected embedding at the end token.

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{layer_norm, LayerNorm, VarBuilder};

use crate::config::ClipTextConfig;
use crate::error::{EngineError, Result};
use crate::layers::{embedding, linear, linear_no_bias, Embedding, Linear};

#[derive(Debug, Clone, Copy)]
enum Activation {
    QuickGelu,
    Gelu,
}

impl Activation {
    fn apply(self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
            Activation::Gelu => xs.gelu_erf(),
        }
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(vb: VarBuilder, hidden: usize, heads: usize) -> candle_core::Result<Self> {
        Ok(Attention {
            q: linear(hidden, hidden, vb.pp("q_proj"))?,
            k: linear(hidden, hidden, vb.pp("k_proj"))?,
            v: linear(hidden, hidden, vb.pp("v_proj"))?,
            out: linear(hidden, hidden, vb.pp("out_proj"))?,
            heads,
            head_dim: hidden / heads,
        })
    }

    fn forward(&self, xs: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, seq, hidden) = xs.dims3()?;
        let split = |t: Tensor| {
            t.reshape((b, seq, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let scale = (self.head_dim as f64).powf(-0.5);
        let q = split((self.q.forward(xs)? * scale)?)?;
        let k = split(self.k.forward(xs)?)?;
        let v = split(self.v.forward(xs)?)?;
        let weights = q.matmul(&k.t()?)?.broadcast_add(mask)?;
        let weights = candle_nn::ops::softmax_last_dim(&weights)?;
        let attended = weights
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, seq, hidden))?;
        self.out.forward(&attended)
    }
}

struct Layer {
    ln1: LayerNorm,
    attention: Attention,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    activation: Activation,
}

impl Layer {
    fn forward(&self, xs: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let xs = (xs + self.attention.forward(&self.ln1.forward(xs)?, mask)?)?;
        let mlp = self.fc2.forward(
            &self
                .activation
                .apply(&self.fc1.forward(&self.ln2.forward(&xs)?)?)?,
        )?;
        xs + mlp
    }
}

/// Which per-token states an encoder gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenStates {
    /// The final layer norm's output (SD 1.x / 2.x).
    Final,
    /// The second-to-last layer's output, without the final layer norm (SDXL:
    /// `hidden_states[-2]`).
    Penultimate,
}

/// What a text encoder gives for a batch of token ids.
#[derive(Debug, Clone)]
pub struct EncodedText {
    /// `[batch, seq, hidden]`.
    pub hidden: Tensor,
    /// `[batch, projection]`: the final layer norm's state at the end token through the text
    /// projection; only for encoders built with one.
    pub pooled: Option<Tensor>,
}

/// A CLIP text transformer.
pub struct ClipTextEncoder {
    token_embedding: Embedding,
    position_embedding: Embedding,
    layers: Vec<Layer>,
    final_layer_norm: LayerNorm,
    text_projection: Option<Linear>,
    /// What the encoder computes in (its weight matrices may be kept narrower).
    dtype: DType,
}

impl ClipTextEncoder {
    /// Builds the encoder from its config; weights under `text_model.` (as SD checkpoints name
    /// them) or without the prefix.
    pub fn new(vb: VarBuilder, config: &ClipTextConfig) -> Result<Self> {
        Self::build(vb, config, false)
    }

    /// Builds a `CLIPTextModelWithProjection`: the encoder and its `text_projection` (no bias)
    /// from `projection_dim`.
    pub fn with_projection(vb: VarBuilder, config: &ClipTextConfig) -> Result<Self> {
        Self::build(vb, config, true)
    }

    fn build(vb: VarBuilder, config: &ClipTextConfig, projection: bool) -> Result<Self> {
        let text_projection = if projection {
            let dim = config.projection_dim.ok_or_else(|| {
                EngineError::Unsupported(
                    "a text encoder with a projection needs projection_dim in its config".into(),
                )
            })?;
            Some(linear_no_bias(
                config.hidden_size,
                dim,
                vb.pp("text_projection"),
            )?)
        } else {
            None
        };
        let activation = match config.hidden_act.as_str() {
            "quick_gelu" => Activation::QuickGelu,
            "gelu" => Activation::Gelu,
            other => {
                return Err(EngineError::Unsupported(format!(
                    "text encoder activation {other:?}"
                )))
            }
        };
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(EngineError::Unsupported(format!(
                "text encoder hidden size {} is not divisible by {} heads",
                config.hidden_size, config.num_attention_heads
            )));
        }
        // SD checkpoints name the weights `text_model.*`; transformers 5 saves them bare.
        let vb = if vb.contains_tensor("text_model.embeddings.token_embedding.weight") {
            vb.pp("text_model")
        } else {
            vb
        };
        let hidden = config.hidden_size;
        let emb = vb.pp("embeddings");
        let layers_vb = vb.pp("encoder").pp("layers");
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = layers_vb.pp(i.to_string());
                Ok(Layer {
                    ln1: layer_norm(hidden, config.layer_norm_eps, l.pp("layer_norm1"))?,
                    attention: Attention::new(
                        l.pp("self_attn"),
                        hidden,
                        config.num_attention_heads,
                    )?,
                    ln2: layer_norm(hidden, config.layer_norm_eps, l.pp("layer_norm2"))?,
                    fc1: linear(hidden, config.intermediate_size, l.pp("mlp").pp("fc1"))?,
                    fc2: linear(config.intermediate_size, hidden, l.pp("mlp").pp("fc2"))?,
                    activation,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(ClipTextEncoder {
            token_embedding: embedding(config.vocab_size, hidden, emb.pp("token_embedding"))?,
            position_embedding: embedding(
                config.max_position_embeddings,
                hidden,
                emb.pp("position_embedding"),
            )?,
            layers,
            final_layer_norm: layer_norm(hidden, config.layer_norm_eps, vb.pp("final_layer_norm"))?,
            text_projection,
            dtype: vb.dtype(),
        })
    }

    /// Encodes token ids `[batch, seq]` (u32) into the final layer norm's `[batch, seq, hidden]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(self.encode(ids, HiddenStates::Final)?.hidden)
    }

    /// Encodes token ids `[batch, seq]` (u32): the `states` asked for, and the pooled
    /// projection when the encoder has one. The end token is found as transformers does for
    /// these configs: the first position of the largest id (`<|endoftext|>` is the last id of
    /// CLIP's vocabulary).
    pub fn encode(&self, ids: &Tensor, states: HiddenStates) -> Result<EncodedText> {
        let (_, seq) = ids.dims2()?;
        let device = ids.device();
        let positions = Tensor::arange(0u32, seq as u32, device)?.unsqueeze(0)?;
        let mut xs = self
            .token_embedding
            .lookup(ids, self.dtype)?
            .broadcast_add(&self.position_embedding.lookup(&positions, self.dtype)?)?;
        let mask = causal_mask(seq, xs.dtype(), device)?;
        let n = self.layers.len();
        // hidden_states[-2]: the embeddings for a one-layer encoder, else layer n-2's output.
        let mut penultimate = (n == 1).then(|| xs.clone());
        for (i, layer) in self.layers.iter().enumerate() {
            xs = layer.forward(&xs, &mask)?;
            if i + 2 == n {
                penultimate = Some(xs.clone());
            }
        }
        let last = self.final_layer_norm.forward(&xs)?;
        let pooled = match &self.text_projection {
            Some(projection) => {
                let rows = ids
                    .to_dtype(DType::U32)?
                    .to_vec2::<u32>()?
                    .iter()
                    .enumerate()
                    .map(|(b, row)| {
                        let end = first_max(row);
                        last.i((b, end))?.unsqueeze(0)
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Some(projection.forward(&Tensor::cat(&rows, 0)?)?)
            }
            None => None,
        };
        let hidden = match states {
            HiddenStates::Final => last,
            HiddenStates::Penultimate => penultimate
                .ok_or_else(|| EngineError::Unsupported("a text encoder without layers".into()))?,
        };
        Ok(EncodedText { hidden, pooled })
    }
}

/// The first index of the largest value (as `torch.argmax`).
fn first_max(row: &[u32]) -> usize {
    row.iter()
        .enumerate()
        .fold(
            (0, 0),
            |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
        )
        .0
}

/// `[seq, seq]` with −∞ above the diagonal, so each token sees only itself and what precedes it.
fn causal_mask(seq: usize, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = (0..seq)
        .flat_map(|i| (0..seq).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (seq, seq), device)?
        .to_dtype(dtype)?
        .unsqueeze(0)?
        .unsqueeze(0)
}
