//! The decoder (diffusers' `AutoencoderKL.decode`: post-quant conv, then `Decoder`).

use candle_core::{Module, Tensor, D};
use candle_nn::VarBuilder;

use super::blocks::{conv1, conv3, CResult, MidBlock, Resnet, EPS};
use super::{check_config, Tiling, TILED_ABOVE_PIXELS};
use crate::config::VaeConfig;
use crate::error::Result;
use crate::kernels::{group_norm, Conv2d, GroupNorm};

/// Resnets, then an optional 2× nearest upsample and conv.
struct UpBlock {
    resnets: Vec<Resnet>,
    upsample: Option<Conv2d>,
}

/// Turns latents into images.
pub struct VaeDecoder {
    tiling: Tiling,
    scale_factor: usize,
    post_quant_conv: Option<Conv2d>,
    conv_in: Conv2d,
    mid: MidBlock,
    up: Vec<UpBlock>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl VaeDecoder {
    /// Builds the decoder of the VAE described by `c` from `vb` (the VAE's weights; only the
    /// decoder's are read).
    pub fn new(vb: VarBuilder, c: &VaeConfig) -> Result<Self> {
        check_config(c)?;
        Ok(Self::build(vb, c)?)
    }

    fn build(vb: VarBuilder, c: &VaeConfig) -> CResult<Self> {
        let groups = c.norm_num_groups;
        let reversed: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
        let top = reversed[0];
        let dvb = vb.pp("decoder");
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
            tiling: Tiling::decoding(c),
            scale_factor: c.scale_factor(),
            post_quant_conv: c
                .use_post_quant_conv
                .then(|| conv1(vb.pp("post_quant_conv"), latent))
                .transpose()?,
            conv_in: conv3(dvb.pp("conv_in"), latent, top)?,
            mid: MidBlock::new(dvb.pp("mid_block"), top, groups)?,
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
    /// images `[batch, channels, h·f, w·f]` in about [-1, 1]; in tiles above
    /// [`TILED_ABOVE_PIXELS`].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = latents.dims4()?;
        let pixels = h * w * self.scale_factor * self.scale_factor;
        if pixels > TILED_ABOVE_PIXELS && (h > self.tiling.tile || w > self.tiling.tile) {
            self.decode_tiled(latents, self.tiling)
        } else {
            Ok(self.forward(latents)?)
        }
    }

    /// Decodes `latents` in overlapping tiles as diffusers' `tiled_decode` does.
    pub fn decode_tiled(&self, latents: &Tensor, tiling: Tiling) -> Result<Tensor> {
        Ok(tiling.run(latents, |tile| self.forward(tile))?)
    }

    fn forward(&self, latents: &Tensor) -> CResult<Tensor> {
        let xs = match &self.post_quant_conv {
            Some(conv) => conv.forward(latents)?,
            None => latents.clone(),
        };
        let mut xs = self.mid.forward(&self.conv_in.forward(&xs)?)?;
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
