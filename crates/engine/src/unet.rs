//! The denoising UNet (`UNet2DConditionModel` of SD 1.x / 2.x), built from its `config.json`.
//!
//! Ours rather than candle-transformers': candle's `DownBlock2D`/`UpBlock2D` build their
//! resnets with 32 norm groups whatever the config says, and its GEGLU uses the tanh GELU
//! where diffusers uses the exact one.

use candle_core::{DType, Module, Tensor, D};
use candle_nn::{layer_norm, Conv2dConfig, LayerNorm, VarBuilder};

use crate::config::UNetConfig;
use crate::error::{EngineError, Result};
use crate::kernels::{attention, conv2d, geglu, group_norm, Conv2d, GroupNorm};
use crate::layers::{linear, linear_no_bias, Linear};

type CResult<T> = candle_core::Result<T>;

/// What the UNet is built from, checked and resolved per block.
#[derive(Debug, Clone)]
struct Plan {
    blocks: Vec<BlockPlan>,
    layers_per_block: usize,
    groups: usize,
    eps: f64,
    cross_dim: usize,
    linear_projection: bool,
    downsample_padding: usize,
    mid_scale: f64,
}

#[derive(Debug, Clone, Copy)]
struct BlockPlan {
    channels: usize,
    cross: bool,
    heads: usize,
    depth: usize,
}

impl Plan {
    fn from_config(c: &UNetConfig) -> Result<Plan> {
        let unsupported = |what: String| Err(EngineError::Unsupported(format!("UNet {what}")));
        if c.act_fn != "silu" {
            return unsupported(format!("activation {:?}", c.act_fn));
        }
        if let Some(kind) = &c.class_embed_type {
            return unsupported(format!("class conditioning {kind:?}"));
        }
        match c.addition_embed_type.as_deref() {
            None => {}
            Some("text_time")
                if c.addition_time_embed_dim.is_none()
                    || c.projection_class_embeddings_input_dim.is_none() =>
            {
                return unsupported(
                    "text_time conditioning without addition_time_embed_dim and \
                     projection_class_embeddings_input_dim"
                        .into(),
                );
            }
            Some("text_time") => {}
            Some(kind) => return unsupported(format!("extra conditioning {kind:?}")),
        }
        if c.mid_block_type.as_deref() != Some("UNetMidBlock2DCrossAttn") {
            return unsupported(format!("mid block {:?}", c.mid_block_type));
        }
        if c.center_input_sample {
            return unsupported("center_input_sample".into());
        }
        let n = c.block_out_channels.len();
        if n == 0 || c.down_block_types.len() != n || c.up_block_types.len() != n {
            return unsupported("block lists of different lengths".into());
        }
        let heads = c
            .num_attention_heads
            .as_ref()
            .unwrap_or(&c.attention_head_dim);
        let mut blocks = Vec::with_capacity(n);
        for i in 0..n {
            let cross = match c.down_block_types[i].as_str() {
                "CrossAttnDownBlock2D" => true,
                "DownBlock2D" => false,
                other => return unsupported(format!("down block {other:?}")),
            };
            let expected_up = if cross {
                "CrossAttnUpBlock2D"
            } else {
                "UpBlock2D"
            };
            if c.up_block_types[n - 1 - i] != expected_up {
                return unsupported(format!(
                    "up blocks that do not mirror the down blocks ({:?})",
                    c.up_block_types
                ));
            }
            let channels = c.block_out_channels[i];
            let heads = heads.for_block(i, n).ok_or_else(|| {
                EngineError::Unsupported("UNet attention heads list of the wrong length".into())
            })?;
            let depth = match &c.transformer_layers_per_block {
                Some(t) => t.for_block(i, n).ok_or_else(|| {
                    EngineError::Unsupported(
                        "UNet transformer_layers_per_block of the wrong length".into(),
                    )
                })?,
                None => 1,
            };
            if !channels.is_multiple_of(c.norm_num_groups)
                || heads == 0
                || !channels.is_multiple_of(heads)
            {
                return unsupported(format!(
                    "block {i}: {channels} channels do not divide into {} norm groups and {heads} heads",
                    c.norm_num_groups
                ));
            }
            blocks.push(BlockPlan {
                channels,
                cross,
                heads,
                depth,
            });
        }
        Ok(Plan {
            blocks,
            layers_per_block: c.layers_per_block,
            groups: c.norm_num_groups,
            eps: c.norm_eps,
            cross_dim: c.cross_attention_dim,
            linear_projection: c.use_linear_projection,
            downsample_padding: c.downsample_padding,
            mid_scale: c.mid_block_scale_factor,
        })
    }
}

fn conv3(
    vb: VarBuilder,
    cin: usize,
    cout: usize,
    stride: usize,
    padding: usize,
) -> CResult<Conv2d> {
    conv2d(
        cin,
        cout,
        3,
        Conv2dConfig {
            padding,
            stride,
            ..Default::default()
        },
        vb,
    )
}

/// Checks that the engine builds a UNet from `c` (its block types, heads and conditioning),
/// without weights.
#[cfg(test)]
pub(crate) fn check_config(c: &UNetConfig) -> Result<()> {
    Plan::from_config(c).map(|_| ())
}

/// A resnet block with timestep conditioning.
struct Resnet {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Linear,
    norm2: GroupNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
    scale: f64,
}

impl Resnet {
    fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        temb: usize,
        p: &Plan,
        scale: f64,
    ) -> CResult<Self> {
        Ok(Resnet {
            norm1: group_norm(p.groups, cin, p.eps, vb.pp("norm1"))?,
            conv1: conv3(vb.pp("conv1"), cin, cout, 1, 1)?,
            time_emb_proj: linear(temb, cout, vb.pp("time_emb_proj"))?,
            norm2: group_norm(p.groups, cout, p.eps, vb.pp("norm2"))?,
            conv2: conv3(vb.pp("conv2"), cout, cout, 1, 1)?,
            shortcut: (cin != cout)
                .then(|| conv2d(cin, cout, 1, Default::default(), vb.pp("conv_shortcut")))
                .transpose()?,
            scale,
        })
    }

    /// `temb` is already passed through SiLU.
    fn forward(&self, xs: &Tensor, temb: &Tensor) -> CResult<Tensor> {
        let h = self.conv1.forward(&self.norm1.norm(xs, true)?)?;
        let t = self
            .time_emb_proj
            .forward(temb)?
            .unsqueeze(D::Minus1)?
            .unsqueeze(D::Minus1)?;
        let h = h.broadcast_add(&t)?;
        let h = self.conv2.forward(&self.norm2.norm(&h, true)?)?;
        let skip = match &self.shortcut {
            Some(c) => c.forward(xs)?,
            None => xs.clone(),
        };
        let sum = (skip + h)?;
        if self.scale == 1.0 {
            Ok(sum)
        } else {
            sum / self.scale
        }
    }
}

/// Multi-head attention; self-attention when no context is given.
struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    scale: f64,
}

impl Attention {
    fn new(vb: VarBuilder, dim: usize, context_dim: usize, heads: usize) -> CResult<Self> {
        Ok(Attention {
            to_q: linear_no_bias(dim, dim, vb.pp("to_q"))?,
            to_k: linear_no_bias(context_dim, dim, vb.pp("to_k"))?,
            to_v: linear_no_bias(context_dim, dim, vb.pp("to_v"))?,
            to_out: linear(dim, dim, vb.pp("to_out").pp("0"))?,
            heads,
            scale: ((dim / heads) as f64).powf(-0.5),
        })
    }

    fn forward(&self, xs: &Tensor, context: Option<&Tensor>) -> CResult<Tensor> {
        let context = context.unwrap_or(xs);
        let q = self.to_q.forward(xs)?;
        let k = self.to_k.forward(context)?;
        let v = self.to_v.forward(context)?;
        self.to_out
            .forward(&attention(&q, &k, &v, self.heads, self.scale)?)
    }
}

/// Self-attention, cross-attention and a GEGLU feed-forward, each pre-normed with a residual.
struct TransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff_in: Linear,
    ff_out: Linear,
}

impl TransformerBlock {
    fn new(vb: VarBuilder, dim: usize, heads: usize, cross_dim: usize) -> CResult<Self> {
        let inner = dim * 4;
        Ok(TransformerBlock {
            norm1: layer_norm(dim, 1e-5, vb.pp("norm1"))?,
            attn1: Attention::new(vb.pp("attn1"), dim, dim, heads)?,
            norm2: layer_norm(dim, 1e-5, vb.pp("norm2"))?,
            attn2: Attention::new(vb.pp("attn2"), dim, cross_dim, heads)?,
            norm3: layer_norm(dim, 1e-5, vb.pp("norm3"))?,
            ff_in: linear(dim, inner * 2, vb.pp("ff").pp("net").pp("0").pp("proj"))?,
            ff_out: linear(inner, dim, vb.pp("ff").pp("net").pp("2"))?,
        })
    }

    fn forward(&self, xs: &Tensor, context: &Tensor) -> CResult<Tensor> {
        let xs = (self.attn1.forward(&self.norm1.forward(xs)?, None)? + xs)?;
        let xs = (self
            .attn2
            .forward(&self.norm2.forward(&xs)?, Some(context))?
            + xs)?;
        let h = geglu(&self.ff_in.forward(&self.norm3.forward(&xs)?)?)?;
        self.ff_out.forward(&h)? + xs
    }
}

/// 1×1 conv (SD 1.x) or linear (SD 2.x) projection.
enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

/// A spatial transformer over the feature map.
struct Transformer2D {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<TransformerBlock>,
    proj_out: Projection,
}

impl Transformer2D {
    fn new(vb: VarBuilder, channels: usize, heads: usize, depth: usize, p: &Plan) -> CResult<Self> {
        let proj = |name: &str| -> CResult<Projection> {
            Ok(if p.linear_projection {
                Projection::Linear(linear(channels, channels, vb.pp(name))?)
            } else {
                Projection::Conv(conv2d(
                    channels,
                    channels,
                    1,
                    Default::default(),
                    vb.pp(name),
                )?)
            })
        };
        let tb = vb.pp("transformer_blocks");
        Ok(Transformer2D {
            norm: group_norm(p.groups, channels, 1e-6, vb.pp("norm"))?,
            proj_in: proj("proj_in")?,
            blocks: (0..depth)
                .map(|i| TransformerBlock::new(tb.pp(i.to_string()), channels, heads, p.cross_dim))
                .collect::<CResult<_>>()?,
            proj_out: proj("proj_out")?,
        })
    }

    fn forward(&self, xs: &Tensor, context: &Tensor) -> CResult<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let normed = self.norm.forward(xs)?;
        let to_seq = |t: Tensor| t.permute((0, 2, 3, 1))?.reshape((b, h * w, c));
        let mut seq = match &self.proj_in {
            Projection::Conv(p) => to_seq(p.forward(&normed)?)?,
            Projection::Linear(p) => p.forward(&to_seq(normed)?)?,
        };
        for block in &self.blocks {
            seq = block.forward(&seq, context)?;
        }
        let to_map = |t: Tensor| t.reshape((b, h, w, c))?.permute((0, 3, 1, 2))?.contiguous();
        let out = match &self.proj_out {
            Projection::Conv(p) => p.forward(&to_map(seq)?)?,
            Projection::Linear(p) => to_map(p.forward(&seq)?)?,
        };
        out + xs
    }
}

/// Resnets, optionally each followed by a transformer, then an optional resampler.
struct Block {
    resnets: Vec<Resnet>,
    attentions: Vec<Transformer2D>,
    resample: Option<Conv2d>,
    /// Downsample convs with padding 0 pad right and bottom first (diffusers).
    pad_before_down: bool,
}

impl Block {
    /// One resnet per entry of `inputs` (its input channels), each followed by a transformer
    /// in cross-attention blocks.
    fn layers(
        vb: &VarBuilder,
        b: &BlockPlan,
        inputs: &[usize],
        temb: usize,
        p: &Plan,
    ) -> CResult<(Vec<Resnet>, Vec<Transformer2D>)> {
        let mut resnets = Vec::with_capacity(inputs.len());
        let mut attentions = Vec::new();
        for (l, &cin) in inputs.iter().enumerate() {
            let name = l.to_string();
            resnets.push(Resnet::new(
                vb.pp("resnets").pp(&name),
                cin,
                b.channels,
                temb,
                p,
                1.0,
            )?);
            if b.cross {
                attentions.push(Transformer2D::new(
                    vb.pp("attentions").pp(&name),
                    b.channels,
                    b.heads,
                    b.depth,
                    p,
                )?);
            }
        }
        Ok((resnets, attentions))
    }

    fn layer(&self, i: usize, xs: &Tensor, temb: &Tensor, context: &Tensor) -> CResult<Tensor> {
        let xs = self.resnets[i].forward(xs, temb)?;
        match self.attentions.get(i) {
            Some(a) => a.forward(&xs, context),
            None => Ok(xs),
        }
    }
}

/// The middle block: resnet, then (transformer, resnet).
struct Mid {
    first: Resnet,
    layers: Vec<(Transformer2D, Resnet)>,
}

/// SDXL's extra conditioning for one UNet call: the pooled text embedding and the six size ids
/// (original height, width, crop top, left, target height, width), one row per batch entry.
#[derive(Debug, Clone)]
pub struct AddedCond {
    /// `[batch, projection]`.
    pub text_embeds: Tensor,
    /// `[batch, 6]`, f32.
    pub time_ids: Tensor,
}

/// `text_time` conditioning: each size id's sinusoid, appended to the pooled text, through
/// Linear → SiLU → Linear; added to the timestep embedding.
struct AddedEmbedding {
    time_dim: usize,
    linear_1: Linear,
    linear_2: Linear,
}

/// Sinusoidal features of `values`, `[n, dim]`, as diffusers' `get_timestep_embedding`: in f32,
/// `[cos, sin]` when `flip`, else `[sin, cos]`.
fn sinusoids(
    values: &[f32],
    dim: usize,
    flip: bool,
    shift: f64,
    device: &candle_core::Device,
) -> CResult<Tensor> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / (half as f64 - shift)).exp() as f32)
        .collect();
    let mut out = Vec::with_capacity(values.len() * dim);
    for &v in values {
        let (sin, cos): (Vec<f32>, Vec<f32>) =
            freqs.iter().map(|f| ((v * f).sin(), (v * f).cos())).unzip();
        if flip {
            out.extend(cos.into_iter().chain(sin));
        } else {
            out.extend(sin.into_iter().chain(cos));
        }
    }
    Tensor::from_vec(out, (values.len(), dim), device)
}

/// A `UNet2DConditionModel`.
pub struct UNet {
    conv_in: Conv2d,
    time_channels: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    time_linear_1: Linear,
    time_linear_2: Linear,
    added: Option<AddedEmbedding>,
    down: Vec<Block>,
    mid: Mid,
    up: Vec<Block>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNet {
    /// Builds the UNet from its diffusers config; weights named as diffusers names them.
    pub fn new(vb: VarBuilder, c: &UNetConfig) -> Result<Self> {
        let p = Plan::from_config(c)?;
        Ok(Self::build(vb, c, &p)?)
    }

    fn build(vb: VarBuilder, c: &UNetConfig, p: &Plan) -> CResult<Self> {
        let n = p.blocks.len();
        let ch0 = p.blocks[0].channels;
        let temb = ch0 * 4;
        let mut down = Vec::with_capacity(n);
        let mut skip_channels = vec![ch0];
        let mut cin = ch0;
        for (i, b) in p.blocks.iter().enumerate() {
            let vb = vb.pp("down_blocks").pp(i.to_string());
            let inputs: Vec<usize> = (0..p.layers_per_block)
                .map(|l| if l == 0 { cin } else { b.channels })
                .collect();
            skip_channels.extend(inputs.iter().map(|_| b.channels));
            let (resnets, attentions) = Block::layers(&vb, b, &inputs, temb, p)?;
            let resample = if i + 1 < n {
                skip_channels.push(b.channels);
                let conv = conv3(
                    vb.pp("downsamplers").pp("0").pp("conv"),
                    b.channels,
                    b.channels,
                    2,
                    p.downsample_padding,
                )?;
                Some(conv)
            } else {
                None
            };
            down.push(Block {
                resnets,
                attentions,
                resample,
                pad_before_down: p.downsample_padding == 0,
            });
            cin = b.channels;
        }

        let last = p.blocks[n - 1];
        let mvb = vb.pp("mid_block");
        let mid = Mid {
            first: Resnet::new(
                mvb.pp("resnets").pp("0"),
                last.channels,
                last.channels,
                temb,
                p,
                p.mid_scale,
            )?,
            layers: vec![(
                Transformer2D::new(
                    mvb.pp("attentions").pp("0"),
                    last.channels,
                    last.heads,
                    last.depth,
                    p,
                )?,
                Resnet::new(
                    mvb.pp("resnets").pp("1"),
                    last.channels,
                    last.channels,
                    temb,
                    p,
                    p.mid_scale,
                )?,
            )],
        };

        let mut up = Vec::with_capacity(n);
        let mut prev = last.channels;
        for i in 0..n {
            let b = p.blocks[n - 1 - i];
            let vb = vb.pp("up_blocks").pp(i.to_string());
            let inputs: Vec<usize> = (0..=p.layers_per_block)
                .map(|l| {
                    let skip = skip_channels.pop().expect("one skip per up resnet");
                    skip + if l == 0 { prev } else { b.channels }
                })
                .collect();
            let (resnets, attentions) = Block::layers(&vb, &b, &inputs, temb, p)?;
            let resample = (i + 1 < n)
                .then(|| {
                    conv3(
                        vb.pp("upsamplers").pp("0").pp("conv"),
                        b.channels,
                        b.channels,
                        1,
                        1,
                    )
                })
                .transpose()?;
            up.push(Block {
                resnets,
                attentions,
                resample,
                pad_before_down: false,
            });
            prev = b.channels;
        }

        Ok(UNet {
            conv_in: conv3(vb.pp("conv_in"), c.in_channels, ch0, 1, 1)?,
            time_channels: ch0,
            flip_sin_to_cos: c.flip_sin_to_cos,
            freq_shift: c.freq_shift,
            time_linear_1: linear(ch0, temb, vb.pp("time_embedding").pp("linear_1"))?,
            time_linear_2: linear(temb, temb, vb.pp("time_embedding").pp("linear_2"))?,
            added: match (
                c.addition_time_embed_dim,
                c.projection_class_embeddings_input_dim,
            ) {
                (Some(time_dim), Some(input)) => Some(AddedEmbedding {
                    time_dim,
                    linear_1: linear(input, temb, vb.pp("add_embedding").pp("linear_1"))?,
                    linear_2: linear(temb, temb, vb.pp("add_embedding").pp("linear_2"))?,
                }),
                _ => None,
            },
            down,
            mid,
            up,
            norm_out: group_norm(p.groups, ch0, p.eps, vb.pp("conv_norm_out"))?,
            conv_out: conv3(vb.pp("conv_out"), ch0, c.out_channels, 1, 1)?,
        })
    }

    /// Whether the UNet takes SDXL's added conditioning.
    pub fn takes_added_cond(&self) -> bool {
        self.added.is_some()
    }

    /// Predicts noise (or v) for latents `xs` at timestep `t` with text `context` (and, for
    /// SDXL, the `added` conditioning).
    pub fn forward(
        &self,
        xs: &Tensor,
        t: f64,
        context: &Tensor,
        added: Option<&AddedCond>,
    ) -> Result<Tensor> {
        match (&self.added, added) {
            (Some(_), None) => Err(EngineError::Unsupported(
                "this UNet needs the pooled text and size conditioning (SDXL)".into(),
            )),
            (None, Some(_)) => Err(EngineError::Unsupported(
                "this UNet takes no added conditioning".into(),
            )),
            _ => Ok(self.forward_inner(xs, t, context, added)?),
        }
    }

    /// The timestep embedding every resnet gets, with SDXL's added conditioning summed in.
    fn embedding(&self, t: f64, xs: &Tensor, added: Option<&AddedCond>) -> CResult<Tensor> {
        let batch = xs.dim(0)?;
        let features = sinusoids(
            &[t as f32],
            self.time_channels,
            self.flip_sin_to_cos,
            self.freq_shift,
            xs.device(),
        )?
        .to_dtype(xs.dtype())?
        .repeat((batch, 1))?;
        let mut temb = self.time_linear_2.forward(&candle_nn::ops::silu(
            &self.time_linear_1.forward(&features)?,
        )?)?;
        if let (Some(embedding), Some(added)) = (&self.added, added) {
            let ids = added.time_ids.to_dtype(DType::F32)?;
            let rows = ids.dim(0)?;
            let time = sinusoids(
                &ids.flatten_all()?.to_vec1::<f32>()?,
                embedding.time_dim,
                self.flip_sin_to_cos,
                self.freq_shift,
                xs.device(),
            )?
            .reshape((rows, ()))?
            .to_dtype(xs.dtype())?;
            let input = Tensor::cat(&[&added.text_embeds.to_dtype(xs.dtype())?, &time], 1)?;
            let aug = embedding
                .linear_2
                .forward(&candle_nn::ops::silu(&embedding.linear_1.forward(&input)?)?)?;
            temb = (temb + aug)?;
        }
        candle_nn::ops::silu(&temb)
    }

    fn forward_inner(
        &self,
        xs: &Tensor,
        t: f64,
        context: &Tensor,
        added: Option<&AddedCond>,
    ) -> CResult<Tensor> {
        let temb = self.embedding(t, xs, added)?;

        let mut h = self.conv_in.forward(xs)?;
        let mut skips = vec![h.clone()];
        for block in &self.down {
            for i in 0..block.resnets.len() {
                h = block.layer(i, &h, &temb, context)?;
                skips.push(h.clone());
            }
            if let Some(conv) = &block.resample {
                let input = if block.pad_before_down {
                    h.pad_with_zeros(D::Minus1, 0, 1)?
                        .pad_with_zeros(D::Minus2, 0, 1)?
                } else {
                    h
                };
                h = conv.forward(&input)?;
                skips.push(h.clone());
            }
        }

        h = self.mid.first.forward(&h, &temb)?;
        for (attn, resnet) in &self.mid.layers {
            h = resnet.forward(&attn.forward(&h, context)?, &temb)?;
        }

        for block in &self.up {
            for i in 0..block.resnets.len() {
                let skip = skips.pop().expect("one skip per up resnet");
                h = block.layer(i, &Tensor::cat(&[&h, &skip], 1)?, &temb, context)?;
            }
            if let Some(conv) = &block.resample {
                // Upsample to the next skip's size, so odd latent sizes line up as in diffusers.
                let (_, _, sh, sw) = skips
                    .last()
                    .expect("skips remain for later blocks")
                    .dims4()?;
                h = conv.forward(&h.upsample_nearest2d(sh, sw)?)?;
            }
        }
        self.conv_out.forward(&self.norm_out.norm(&h, true)?)
    }
}
