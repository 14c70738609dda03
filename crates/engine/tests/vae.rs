//! Our VAE against diffusers' `AutoencoderKL` on a tiny random VAE (three levels): decoding a
//! 20×28 latent and encoding a 72×88 image, whole and in tiles (`enable_tiling`), made by
//! `data/make_vae_reference.py`.

mod common;

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use selfdiffusion_engine::config::{read_json, VaeConfig};
use selfdiffusion_engine::vae::{Tiling, Vae};

fn tiny_vae() -> (
    Vae,
    VaeConfig,
    std::collections::HashMap<String, candle_core::Tensor>,
) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-vae");
    let config: VaeConfig = read_json(&dir.join("config.json")).unwrap();
    let weights = dir.join("diffusion_pytorch_model.safetensors");
    // SAFETY: test data, not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }
        .unwrap();
    let vae = Vae::new(vb, &config).unwrap();
    let io = common::load_tensors(&dir.join("reference.safetensors"));
    (vae, config, io)
}

#[test]
fn decode_matches_diffusers() {
    let (vae, _, io) = tiny_vae();
    // Small enough to be decoded whole.
    let ours = vae.decoder.decode(&io["latents"]).unwrap();
    common::check("whole decode", &ours, &io["plain"], 1e-5);
}

#[test]
fn tiled_decode_matches_diffusers_tiling() {
    let (vae, config, io) = tiny_vae();
    let tiling = Tiling::decoding(&config);
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
    let ours = vae.decoder.decode_tiled(&io["latents"], tiling).unwrap();
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
    let tiled = vae.decoder.decode_tiled(&io["latents"], whole).unwrap();
    let plain = vae.decoder.decode(&io["latents"]).unwrap();
    assert_eq!(common::max_diff(&tiled, &plain), 0.0);
}

#[test]
fn encode_matches_diffusers() {
    let (vae, _, io) = tiny_vae();
    let posterior = vae.encoder.encode(&io["image"]).unwrap();
    common::check("posterior mean", &posterior.mean, &io["mean"], 1e-5);
    common::check("posterior std", &posterior.std, &io["std"], 1e-5);
    let sample = posterior.sample(&io["sample_noise"]).unwrap();
    common::check("posterior sample", &sample, &io["sample"], 1e-5);
}

#[test]
fn tiled_encode_matches_diffusers_tiling() {
    let (vae, config, io) = tiny_vae();
    let tiling = Tiling::encoding(&config);
    // 32-pixel tiles every 24 pixels, blended over 2 of a tile's 8 latent cells.
    assert_eq!(
        tiling,
        Tiling {
            tile: 32,
            stride: 24,
            blend: 2,
            keep: 6
        }
    );
    let posterior = vae.encoder.encode_tiled(&io["image"], tiling).unwrap();
    common::check("tiled mean", &posterior.mean, &io["tiled_mean"], 1e-5);
    common::check("tiled std", &posterior.std, &io["tiled_std"], 1e-5);
    assert!(common::max_diff(&io["tiled_mean"], &io["mean"]) > 0.1);
}
