//! The blocks the encoder and the decoder share: resnets without timestep conditioning and the
//! single-head attention of the middle block.

use candle_core::{Module, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use crate::kernels::{attention, conv2d, group_norm, Conv2d, GroupNorm};
use crate::layers::Linear;

pub(super) type CResult<T> = candle_core::Result<T>;

/// The norm epsilon of every VAE resnet and attention (diffusers hard-codes it).
pub(super) const EPS: f64 = 1e-6;

/// A 3×3 convolution keeping the size.
pub(super) fn conv3(vb: VarBuilder, cin: usize, cout: usize) -> CResult<Conv2d> {
    let padding = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    conv2d(cin, cout, 3, padding, vb)
}

/// A resnet without timestep conditioning.
pub(super) struct Resnet {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl Resnet {
    pub(super) fn new(vb: VarBuilder, cin: usize, cout: usize, groups: usize) -> CResult<Self> {
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

    pub(super) fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
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

/// The middle of the encoder and of the decoder: resnet, attention, resnet.
pub(super) struct MidBlock {
    first: Resnet,
    attention: AttentionBlock,
    second: Resnet,
}

impl MidBlock {
    pub(super) fn new(vb: VarBuilder, channels: usize, groups: usize) -> CResult<Self> {
        Ok(MidBlock {
            first: Resnet::new(vb.pp("resnets").pp("0"), channels, channels, groups)?,
            attention: AttentionBlock::new(vb.pp("attentions").pp("0"), channels, groups)?,
            second: Resnet::new(vb.pp("resnets").pp("1"), channels, channels, groups)?,
        })
    }

    pub(super) fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        let xs = self.first.forward(xs)?;
        let xs = self.attention.forward(&xs)?;
        self.second.forward(&xs)
    }
}

/// A 1×1 convolution over `channels` (the quant and post-quant convs).
pub(super) fn conv1(vb: VarBuilder, channels: usize) -> CResult<Conv2d> {
    conv2d(channels, channels, 1, Default::default(), vb)
}
