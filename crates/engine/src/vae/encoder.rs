//! The encoder (diffusers' `AutoencoderKL.encode`: `Encoder`, then the quant conv) and the
//! latent distribution it predicts.

use candle_core::{Module, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use super::blocks::{conv1, conv3, CResult, MidBlock, Resnet, EPS};
use super::{check_config, Tiling, TILED_ABOVE_PIXELS};
use crate::config::VaeConfig;
use crate::error::Result;
use crate::kernels::{conv2d, group_norm, Conv2d, GroupNorm};

/// Resnets, then an optional stride-2 conv that halves the size.
struct DownBlock {
    resnets: Vec<Resnet>,
    downsample: Option<Conv2d>,
}

/// Turns images into the distribution of their latents.
pub struct VaeEncoder {
    tiling: Tiling,
    conv_in: Conv2d,
    down: Vec<DownBlock>,
    mid: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    quant_conv: Option<Conv2d>,
}

/// The diagonal Gaussian the encoder predicts for each latent value (diffusers'
/// `DiagonalGaussianDistribution`).
#[derive(Debug, Clone)]
pub struct Posterior {
    /// Its mean, `[batch, latent, h, w]`.
    pub mean: Tensor,
    /// Its standard deviation, from the log-variance clamped to [−30, 20] as diffusers does.
    pub std: Tensor,
}

impl Posterior {
    /// Splits the encoder's moments (`[batch, 2·latent, h, w]`: mean, then log-variance).
    fn from_moments(moments: &Tensor) -> CResult<Self> {
        let latent = moments.dim(1)? / 2;
        let mean = moments.narrow(1, 0, latent)?;
        let std = (moments.narrow(1, latent, latent)?.clamp(-30f32, 20f32)? * 0.5)?.exp()?;
        Ok(Posterior { mean, std })
    }

    /// A sample: mean + std · `noise` (standard normal, the mean's shape), as
    /// `latent_dist.sample()` draws it.
    pub fn sample(&self, noise: &Tensor) -> Result<Tensor> {
        let noise = noise
            .to_device(self.mean.device())?
            .to_dtype(self.mean.dtype())?;
        Ok((&self.mean + (&self.std * noise)?)?)
    }
}

impl VaeEncoder {
    /// Builds the encoder of the VAE described by `c` from `vb` (the VAE's weights; only the
    /// encoder's are read).
    pub fn new(vb: VarBuilder, c: &VaeConfig) -> Result<Self> {
        check_config(c)?;
        Ok(Self::build(vb, c)?)
    }

    fn build(vb: VarBuilder, c: &VaeConfig) -> CResult<Self> {
        let groups = c.norm_num_groups;
        let channels = &c.block_out_channels;
        let evb = vb.pp("encoder");
        let mut down = Vec::with_capacity(channels.len());
        let mut cin = channels[0];
        for (i, &cout) in channels.iter().enumerate() {
            let bvb = evb.pp("down_blocks").pp(i.to_string());
            let resnets = (0..c.layers_per_block)
                .map(|l| {
                    Resnet::new(
                        bvb.pp("resnets").pp(l.to_string()),
                        if l == 0 { cin } else { cout },
                        cout,
                        groups,
                    )
                })
                .collect::<CResult<_>>()?;
            let halve = Conv2dConfig {
                stride: 2,
                ..Default::default()
            };
            let downsample = (i + 1 < channels.len())
                .then(|| {
                    conv2d(
                        cout,
                        cout,
                        3,
                        halve,
                        bvb.pp("downsamplers").pp("0").pp("conv"),
                    )
                })
                .transpose()?;
            down.push(DownBlock {
                resnets,
                downsample,
            });
            cin = cout;
        }
        let top = *channels.last().expect("checked: not empty");
        let moments = 2 * c.latent_channels;
        Ok(VaeEncoder {
            tiling: Tiling::encoding(c),
            conv_in: conv3(evb.pp("conv_in"), c.in_channels, channels[0])?,
            down,
            mid: MidBlock::new(evb.pp("mid_block"), top, groups)?,
            norm_out: group_norm(groups, top, EPS, evb.pp("conv_norm_out"))?,
            conv_out: conv3(evb.pp("conv_out"), top, moments)?,
            quant_conv: c
                .use_quant_conv
                .then(|| conv1(vb.pp("quant_conv"), moments))
                .transpose()?,
        })
    }

    /// Encodes images `[batch, channels, H, W]` in [−1, 1] (sides multiples of the VAE's scale
    /// factor) into the distribution of their latents (not yet multiplied by the scaling
    /// factor); in tiles above [`TILED_ABOVE_PIXELS`].
    pub fn encode(&self, images: &Tensor) -> Result<Posterior> {
        let (_, _, h, w) = images.dims4()?;
        if h * w > TILED_ABOVE_PIXELS && (h > self.tiling.tile || w > self.tiling.tile) {
            self.encode_tiled(images, self.tiling)
        } else {
            Ok(Posterior::from_moments(&self.forward(images)?)?)
        }
    }

    /// Encodes `images` in overlapping tiles as diffusers' `_tiled_encode` does.
    pub fn encode_tiled(&self, images: &Tensor, tiling: Tiling) -> Result<Posterior> {
        let moments = tiling.run(images, |tile| self.forward(tile))?;
        Ok(Posterior::from_moments(&moments)?)
    }

    fn forward(&self, images: &Tensor) -> CResult<Tensor> {
        let mut xs = self.conv_in.forward(images)?;
        for block in &self.down {
            for resnet in &block.resnets {
                xs = resnet.forward(&xs)?;
            }
            if let Some(conv) = &block.downsample {
                // diffusers pads one zero row and column at the bottom and right only.
                xs = conv.forward(&xs.pad_with_zeros(2, 0, 1)?.pad_with_zeros(3, 0, 1)?)?;
            }
        }
        let xs = self.mid.forward(&xs)?;
        let xs = self.conv_out.forward(&self.norm_out.norm(&xs, true)?)?;
        match &self.quant_conv {
            Some(conv) => conv.forward(&xs),
            None => Ok(xs),
        }
    }
}
