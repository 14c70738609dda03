//! diffusers' tiled encode and decode (`AutoencoderKL._tiled_encode` / `tiled_decode`): the
//! input is cut into overlapping tiles, each goes through the network alone, and each tile's
//! top and left edges are blended with the (already blended) tiles above and to the left before
//! the first `keep` rows and columns of every tile are stitched together.

use candle_core::Tensor;

use super::blocks::CResult;
use crate::config::VaeConfig;

/// How a tiled pass cuts its input and stitches its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// Tile side, in input units (latent cells when decoding, pixels when encoding).
    pub tile: usize,
    /// Distance between tile starts, in input units (a quarter of a tile overlaps).
    pub stride: usize,
    /// Output rows or columns over which neighbouring tiles are blended.
    pub blend: usize,
    /// Output rows and columns of each tile kept.
    pub keep: usize,
}

impl Tiling {
    /// diffusers' tiled decode for the VAE of `c`: tiles of `sample_size` pixels, that is
    /// `sample_size / scale` latent cells, overlapping by a quarter.
    pub fn decoding(c: &VaeConfig) -> Tiling {
        let side = c.tile_side();
        let cells = (side / c.scale_factor()).max(1);
        let blend = side / 4;
        Tiling {
            tile: cells,
            stride: (cells as f64 * 0.75) as usize,
            blend,
            keep: side - blend,
        }
    }

    /// diffusers' tiled encode for the VAE of `c`: tiles of `sample_size` pixels overlapping by
    /// a quarter, blended over a quarter of a tile's latent cells.
    pub fn encoding(c: &VaeConfig) -> Tiling {
        let side = c.tile_side().max(1);
        let cells = (side / c.scale_factor()).max(1);
        let blend = (cells as f64 * 0.25) as usize;
        Tiling {
            tile: side,
            stride: (side as f64 * 0.75) as usize,
            blend,
            keep: cells - blend,
        }
    }

    /// Runs `forward` over `input` (`[batch, channels, h, w]`) tile by tile and stitches the
    /// outputs.
    pub(super) fn run(
        self,
        input: &Tensor,
        forward: impl Fn(&Tensor) -> CResult<Tensor>,
    ) -> CResult<Tensor> {
        let (_, _, h, w) = input.dims4()?;
        let stride = self.stride.max(1);
        let mut rows: Vec<Vec<Tensor>> = Vec::new();
        for i in (0..h).step_by(stride) {
            let mut row: Vec<Tensor> = Vec::new();
            for j in (0..w).step_by(stride) {
                let tile =
                    input
                        .narrow(2, i, self.tile.min(h - i))?
                        .narrow(3, j, self.tile.min(w - j))?;
                let mut tile = forward(&tile)?;
                if let Some(above) = rows.last() {
                    tile = blend(&above[row.len()], &tile, self.blend, 2)?;
                }
                if let Some(left) = row.last() {
                    tile = blend(left, &tile, self.blend, 3)?;
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
                        t.narrow(2, 0, self.keep.min(th))?
                            .narrow(3, 0, self.keep.min(tw))
                    })
                    .collect::<CResult<Vec<_>>>()?;
                Tensor::cat(&kept, 3)
            })
            .collect::<CResult<Vec<_>>>()?;
        Tensor::cat(&stitched, 2)
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
