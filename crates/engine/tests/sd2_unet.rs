//! Our UNet against diffusers on a tiny SD 2.x-style UNet (linear projections, per-block head
//! counts, three blocks, a 6×10 latent), made by `data/make_sd2_unet_reference.py`.

mod common;

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use selfdiffusion_engine::config::{read_json, UNetConfig};
use selfdiffusion_engine::UNet;

#[test]
fn sd2_style_unet_matches_diffusers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-sd2-unet");
    let config: UNetConfig = read_json(&dir.join("config.json")).unwrap();
    assert!(config.use_linear_projection);
    let weights = dir.join("diffusion_pytorch_model.safetensors");
    // SAFETY: test data, not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }
        .unwrap();
    let unet = UNet::new(vb, &config).unwrap();
    let io = candle_core::safetensors::load(dir.join("io.safetensors"), &Device::Cpu).unwrap();
    let ours = unet
        .forward(&io["sample"], 421.0, &io["context"], None)
        .unwrap();
    let diff = common::max_diff(&ours, &io["out"]);
    eprintln!("sd2 unet: max |diff| = {diff:.2e}");
    assert!(diff < 1e-4, "max |diff| = {diff:e}");
}

#[test]
fn gelu_text_encoder_matches_transformers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-sd2-unet");
    let config: selfdiffusion_engine::config::ClipTextConfig =
        read_json(&dir.join("clip_config.json")).unwrap();
    assert_eq!(config.hidden_act, "gelu");
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("clip.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
    }
    .unwrap();
    let clip = selfdiffusion_engine::ClipTextEncoder::new(vb, &config).unwrap();
    let io = candle_core::safetensors::load(dir.join("clip_io.safetensors"), &Device::Cpu).unwrap();
    let ours = clip
        .forward(&io["ids"].to_dtype(DType::U32).unwrap())
        .unwrap();
    let diff = common::max_diff(&ours, &io["hidden"]);
    eprintln!("gelu clip: max |diff| = {diff:.2e}");
    assert!(diff < 1e-4, "max |diff| = {diff:e}");
}
