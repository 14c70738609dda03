//! The VAE decoder (diffusers' `AutoencoderKL.decode`: post-quant conv, then `Decoder`), built
//! from the VAE's `config.json` on the engine's kernels. Only the decoder's weights are read:
//! text-to-image never encodes.

use candle_core::{Module, Tensor, D};
use candle_nn::{Conv2dConfig, Linear, VarBuilder};

use crate::config::VaeConfig;
use crate::error::{EngineError, Result};
use crate::kernels::{attention, conv2d, group_norm, Conv2d, GroupNorm};

type CResult<T> = candle_core::Result<T>;

/// The norm epsilon of every VAE resnet and attention (diffusers hard-codes it).
const EPS: f64 = 1e-6;

fn conv3(vb: VarBuilder, cin: usize, cout: usize) -> CResult<Conv2d> {
    let padding = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    conv2d(cin, cout, 3, padding, vb)
}

/// A resnet without timestep conditioning.
struct Resnet {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl Resnet {
    fn new(vb: VarBuilder, cin: usize, cout: usize, groups: usize) -> CResult<Self> {
        Ok(Resnet {
            norm1: group_norm(groups, cin, EPS, vb.pp("norm1"))?,
            conv1: conv3(vb.pp("conv1"), cin, cout)?,
            norm2: group_norm(groups, cout, EPS, vb.pp("norm2"))?,
            conv2: conv3(vb.pp("conv2"), cout, cout)?,
            shortcut: (cin != cout)
                .then(|| conv2d(cin, cout, 1, Default::default(), vb.pp("conv_shortcut")))
                .transpose()?,
        })
    }

    fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        let h = self.conv1.forward(&self.norm1.norm(xs, true)?)?;
        let h = self.conv2.forward(&self.norm2.norm(&h, true)?)?;
        match &self.shortcut {
            Some(c) => c.forward(xs)? + h,
            None => xs + h,
        }
    }
}

/// A linear layer of the attention block: `[c, c]`, or `[c, c, 1, 1]` as old checkpoints
/// store it (a 1×1 conv).
fn projection(vb: VarBuilder, channels: usize) -> CResult<Linear> {
    let weight = match vb.get((channels, channels), "weight") {
        Ok(weight) => weight,
        Err(_) => vb
            .get((channels, channels, 1, 1), "weight")?
            .reshape((channels, channels))?,
    };
    Ok(Linear::new(weight, Some(vb.get(channels, "bias")?)))
}

/// Single-head self-attention over the feature map's pixels, with a residual.
struct AttentionBlock {
    norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    scale: f64,
}

impl AttentionBlock {
    fn new(vb: VarBuilder, channels: usize, groups: usize) -> CResult<Self> {
        // diffusers' names, or the ones folders saved before diffusers 0.14 use.
        let names = if vb.contains_tensor("to_q.weight") {
            ["to_q", "to_k", "to_v", "to_out.0"]
        } else {
            ["query", "key", "value", "proj_attn"]
        };
        Ok(AttentionBlock {
            norm: group_norm(groups, channels, EPS, vb.pp("group_norm"))?,
            to_q: projection(vb.pp(names[0]), channels)?,
            to_k: projection(vb.pp(names[1]), channels)?,
            to_v: projection(vb.pp(names[2]), channels)?,
            to_out: projection(vb.pp(names[3]), channels)?,
            scale: (channels as f64).powf(-0.5),
        })
    }

    fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let seq = self
            .norm
            .forward(xs)?
            .reshape((b, c, h * w))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = self.to_q.forward(&seq)?;
        let k = self.to_k.forward(&seq)?;
        let v = self.to_v.forward(&seq)?;
        let out = self
            .to_out
            .forward(&attention(&q, &k, &v, 1, self.scale)?)?;
        out.transpose(1, 2)?.reshape((b, c, h, w))? + xs
    }
}

/// Resnets, then an optional 2× nearest upsample and conv.
struct UpBlock {
    resnets: Vec<Resnet>,
    upsample: Option<Conv2d>,
}

/// Turns latents into images.
pub struct VaeDecoder {
    post_quant_conv: Option<Conv2d>,
    conv_in: Conv2d,
    mid_first: Resnet,
    mid_attention: AttentionBlock,
    mid_second: Resnet,
    up: Vec<UpBlock>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl VaeDecoder {
    /// Builds the decoder of the VAE described by `c` from `vb` (the VAE's weights).
    pub fn new(vb: VarBuilder, c: &VaeConfig) -> Result<Self> {
        let groups = c.norm_num_groups;
        let channels = &c.block_out_channels;
        if channels.is_empty() || groups == 0 || channels.iter().any(|ch| ch % groups != 0) {
            return Err(EngineError::Unsupported(format!(
                "VAE channels {channels:?} with {groups} norm groups"
            )));
        }
        Ok(Self::build(vb, c)?)
    }

    fn build(vb: VarBuilder, c: &VaeConfig) -> CResult<Self> {
        let groups = c.norm_num_groups;
        let reversed: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
        let top = reversed[0];
        let dvb = vb.pp("decoder");
        let mid = dvb.pp("mid_block");
        let mut up = Vec::with_capacity(reversed.len());
        let mut cin = top;
        for (i, &cout) in reversed.iter().enumerate() {
            let bvb = dvb.pp("up_blocks").pp(i.to_string());
            let resnets = (0..=c.layers_per_block)
                .map(|l| {
                    Resnet::new(
                        bvb.pp("resnets").pp(l.to_string()),
                        if l == 0 { cin } else { cout },
                        cout,
                        groups,
                    )
                })
                .collect::<CResult<_>>()?;
            let upsample = (i + 1 < reversed.len())
                .then(|| conv3(bvb.pp("upsamplers").pp("0").pp("conv"), cout, cout))
                .transpose()?;
            up.push(UpBlock { resnets, upsample });
            cin = cout;
        }
        let latent = c.latent_channels;
        Ok(VaeDecoder {
            post_quant_conv: c
                .use_post_quant_conv
                .then(|| {
                    conv2d(
                        latent,
                        latent,
                        1,
                        Default::default(),
                        vb.pp("post_quant_conv"),
                    )
                })
                .transpose()?,
            conv_in: conv3(dvb.pp("conv_in"), latent, top)?,
            mid_first: Resnet::new(mid.pp("resnets").pp("0"), top, top, groups)?,
            mid_attention: AttentionBlock::new(mid.pp("attentions").pp("0"), top, groups)?,
            mid_second: Resnet::new(mid.pp("resnets").pp("1"), top, top, groups)?,
            up,
            norm_out: group_norm(
                groups,
                c.block_out_channels[0],
                EPS,
                dvb.pp("conv_norm_out"),
            )?,
            conv_out: conv3(dvb.pp("conv_out"), c.block_out_channels[0], c.out_channels)?,
        })
    }

    /// Decodes latents `[batch, latent, h, w]` (already divided by the scaling factor) into
    /// images `[batch, channels, h·f, w·f]` in about [-1, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        Ok(self.forward(latents)?)
    }

    fn forward(&self, latents: &Tensor) -> CResult<Tensor> {
        let xs = match &self.post_quant_conv {
            Some(conv) => conv.forward(latents)?,
            None => latents.clone(),
        };
        let xs = self.conv_in.forward(&xs)?;
        let xs = self.mid_first.forward(&xs)?;
        let xs = self.mid_attention.forward(&xs)?;
        let mut xs = self.mid_second.forward(&xs)?;
        for block in &self.up {
            for resnet in &block.resnets {
                xs = resnet.forward(&xs)?;
            }
            if let Some(conv) = &block.upsample {
                let (h, w) = (xs.dim(D::Minus2)?, xs.dim(D::Minus1)?);
                xs = conv.forward(&xs.upsample_nearest2d(2 * h, 2 * w)?)?;
            }
        }
        self.conv_out.forward(&self.norm_out.norm(&xs, true)?)
    }
}
