//! Our VAE decoder against diffusers' `AutoencoderKL` on a tiny random VAE (three levels, a
//! 20×28 latent), whole and in tiles (`enable_tiling`), made by `data/make_vae_reference.py`.

mod common;

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use selfdiffusion_engine::config::{read_json, VaeConfig};
use selfdiffusion_engine::vae::{Tiling, VaeDecoder};

fn tiny_vae() -> (
    VaeDecoder,
    VaeConfig,
    std::collections::HashMap<String, candle_core::Tensor>,
) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-vae");
    let config: VaeConfig = read_json(&dir.join("config.json")).unwrap();
    let weights = dir.join("diffusion_pytorch_model.safetensors");
    // SAFETY: test data, not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }
        .unwrap();
    let vae = VaeDecoder::new(vb, &config).unwrap();
    let io = common::load_tensors(&dir.join("reference.safetensors"));
    (vae, config, io)
}

#[test]
fn decode_matches_diffusers() {
    let (vae, _, io) = tiny_vae();
    // Small enough to be decoded whole.
    let ours = vae.decode(&io["latents"]).unwrap();
    common::check("whole decode", &ours, &io["plain"], 1e-5);
}

#[test]
fn tiled_decode_matches_diffusers_tiling() {
    let (vae, config, io) = tiny_vae();
    let tiling = Tiling::of(&config);
    // sample_size 32 over 3 levels: 8-cell tiles every 6 cells, blended over 8 pixels.
    assert_eq!(
        tiling,
        Tiling {
            tile: 8,
            stride: 6,
            blend: 8,
            keep: 24
        }
    );
    let ours = vae.decode_tiled(&io["latents"], tiling).unwrap();
    common::check("tiled decode", &ours, &io["tiled"], 1e-5);
    // The tiles differ from the whole decode (this is not the same function), so the check
    // above could not pass by decoding whole.
    assert!(common::max_diff(&io["tiled"], &io["plain"]) > 0.1);
}

#[test]
fn one_tile_covering_the_latent_is_the_whole_decode() {
    let (vae, _, io) = tiny_vae();
    let whole = Tiling {
        tile: 64,
        stride: 48,
        blend: 64,
        keep: 192,
    };
    let tiled = vae.decode_tiled(&io["latents"], whole).unwrap();
    let plain = vae.decode(&io["latents"]).unwrap();
    assert_eq!(common::max_diff(&tiled, &plain), 0.0);
}
