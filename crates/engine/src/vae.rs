//! The VAE decoder (diffusers' `AutoencoderKL.decode`: post-quant conv, then `Decoder`), built
//! from the VAE's `config.json` on the engine's kernels. Only the decoder's weights are read:
//! text-to-image never encodes.
//!
//! Images larger than [`TILED_ABOVE_PIXELS`] are decoded in overlapping tiles, blended where
//! they meet, exactly as diffusers' `enable_vae_tiling` does, so memory stays that of one tile
//! whatever the image size; smaller images are decoded whole, as diffusers does by default.

use candle_core::{Module, Tensor, D};
use candle_nn::{Conv2dConfig, Linear, VarBuilder};

use crate::config::VaeConfig;
use crate::error::{EngineError, Result};
use crate::kernels::{attention, conv2d, group_norm, Conv2d, GroupNorm};

type CResult<T> = candle_core::Result<T>;

/// The norm epsilon of every VAE resnet and attention (diffusers hard-codes it).
const EPS: f64 = 1e-6;

/// Images of more pixels than this are decoded in tiles (a whole 1024² decode needs about 3 GB
/// of activations in f32; a 2048² one four times that).
pub const TILED_ABOVE_PIXELS: usize = 1024 * 1024;

/// How diffusers' tiled decode cuts a latent (`AutoencoderKL.tiled_decode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// Tile side in latent cells.
    pub tile: usize,
    /// Distance between tile starts in latent cells (a quarter of a tile overlaps).
    pub stride: usize,
    /// Pixels over which neighbouring tiles are blended.
    pub blend: usize,
    /// Pixels of each decoded tile kept.
    pub keep: usize,
}

impl Tiling {
    /// diffusers' tiling for the VAE of `c`: tiles of `sample_size` pixels overlapping by a
    /// quarter.
    pub fn of(c: &VaeConfig) -> Tiling {
        let side = c.tile_side();
        let tile = (side / c.scale_factor()).max(1);
        let blend = side / 4;
        Tiling {
            tile,
            stride: (tile as f64 * 0.75) as usize,
            blend,
            keep: side - blend,
        }
    }
}

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
    tiling: Tiling,
    scale_factor: usize,
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
            tiling: Tiling::of(c),
            scale_factor: c.scale_factor(),
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

    /// Decodes `latents` in overlapping tiles as diffusers' `tiled_decode` does: each tile is
    /// decoded alone, its top and left edges are blended linearly with the (already blended)
    /// tiles above and to the left, and the first `keep` pixels of each are stitched together.
    pub fn decode_tiled(&self, latents: &Tensor, tiling: Tiling) -> Result<Tensor> {
        let (_, _, h, w) = latents.dims4()?;
        let stride = tiling.stride.max(1);
        let mut rows: Vec<Vec<Tensor>> = Vec::new();
        for i in (0..h).step_by(stride) {
            let mut row: Vec<Tensor> = Vec::new();
            for j in (0..w).step_by(stride) {
                let tile = latents.narrow(2, i, tiling.tile.min(h - i))?.narrow(
                    3,
                    j,
                    tiling.tile.min(w - j),
                )?;
                let mut tile = self.forward(&tile)?;
                if let Some(above) = rows.last() {
                    tile = blend(&above[row.len()], &tile, tiling.blend, 2)?;
                }
                if let Some(left) = row.last() {
                    tile = blend(left, &tile, tiling.blend, 3)?;
                }
                row.push(tile);
            }
            rows.push(row);
        }
        let stitched = rows
            .iter()
            .map(|row| {
                let kept = row
                    .iter()
                    .map(|t| {
                        let (th, tw) = (t.dim(2)?, t.dim(3)?);
                        t.narrow(2, 0, tiling.keep.min(th))?
                            .narrow(3, 0, tiling.keep.min(tw))
                    })
                    .collect::<CResult<Vec<_>>>()?;
                Tensor::cat(&kept, 3)
            })
            .collect::<CResult<Vec<_>>>()?;
        Ok(Tensor::cat(&stitched, 2)?)
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

/// `b` with its first `extent` rows (`dim` 2) or columns (`dim` 3) faded in from the last ones
/// of `a`: diffusers' `blend_v` / `blend_h`, weight y/extent for `b` and 1 − y/extent for `a`.
fn blend(a: &Tensor, b: &Tensor, extent: usize, dim: usize) -> CResult<Tensor> {
    let extent = extent.min(a.dim(dim)?).min(b.dim(dim)?);
    if extent == 0 {
        return Ok(b.clone());
    }
    let mut shape = [1usize; 4];
    shape[dim] = extent;
    let ramp: Vec<f64> = (0..extent).map(|y| y as f64 / extent as f64).collect();
    let ours = Tensor::from_iter(ramp.iter().map(|&r| r as f32), b.device())?
        .reshape(shape.as_slice())?
        .to_dtype(b.dtype())?;
    let theirs = Tensor::from_iter(ramp.iter().map(|&r| (1.0 - r) as f32), b.device())?
        .reshape(shape.as_slice())?
        .to_dtype(b.dtype())?;
    let edge = (a
        .narrow(dim, a.dim(dim)? - extent, extent)?
        .broadcast_mul(&theirs)?
        + b.narrow(dim, 0, extent)?.broadcast_mul(&ours)?)?;
    let rest = b.narrow(dim, extent, b.dim(dim)? - extent)?;
    Tensor::cat(&[edge, rest], dim)
}
