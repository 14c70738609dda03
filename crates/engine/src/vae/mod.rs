//! The VAE (diffusers' `AutoencoderKL`), built from its `config.json` on the engine's kernels:
//! the encoder turns images into latents (img2img, inpainting), the decoder turns latents into
//! images.
//!
//! Images larger than [`TILED_ABOVE_PIXELS`] are encoded and decoded in overlapping tiles,
//! blended where they meet, exactly as diffusers' `enable_vae_tiling` does, so memory stays
//! that of one tile whatever the image size; smaller images go through whole, as diffusers does
//! by default.

mod blocks;
mod decoder;
mod encoder;
mod tiling;

use candle_nn::VarBuilder;

use crate::config::VaeConfig;
use crate::error::{EngineError, Result};

pub use decoder::VaeDecoder;
pub use encoder::{Posterior, VaeEncoder};
pub use tiling::Tiling;

/// Images of more pixels than this are encoded and decoded in tiles (a whole 1024² decode needs
/// about 3 GB of activations in f32; a 2048² one four times that).
pub const TILED_ABOVE_PIXELS: usize = 1024 * 1024;

/// Both halves of the autoencoder.
pub struct Vae {
    /// Images to latents.
    pub encoder: VaeEncoder,
    /// Latents to images.
    pub decoder: VaeDecoder,
}

impl Vae {
    /// Builds the encoder and the decoder of the VAE described by `c` from `vb` (its weights).
    pub fn new(vb: VarBuilder, c: &VaeConfig) -> Result<Self> {
        Ok(Vae {
            encoder: VaeEncoder::new(vb.clone(), c)?,
            decoder: VaeDecoder::new(vb, c)?,
        })
    }
}

/// Refuses a VAE shape the blocks cannot be built for.
fn check_config(c: &VaeConfig) -> Result<()> {
    let groups = c.norm_num_groups;
    let channels = &c.block_out_channels;
    if channels.is_empty() || groups == 0 || channels.iter().any(|ch| ch % groups != 0) {
        return Err(EngineError::Unsupported(format!(
            "VAE channels {channels:?} with {groups} norm groups"
        )));
    }
    Ok(())
}
