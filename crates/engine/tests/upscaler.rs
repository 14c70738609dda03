//! The ESRGAN upscaler against a PyTorch RRDBNet on tiny random weights
//! (`data/make_esrgan_reference.py`): ×4 from safetensors and from a `.pth`, ×2 with its
//! pixel-unshuffled input, and tiles that add nothing of their own.

mod common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use selfdiffusion_engine::{Picture, Upscaler};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-esrgan")
}

fn reference() -> std::collections::HashMap<String, Tensor> {
    common::load_tensors(&data().join("reference.safetensors"))
}

#[test]
fn matches_pytorch_from_safetensors_and_pth() {
    let io = reference();
    for (file, key) in [
        ("x4.safetensors", "x4"),
        ("x4.pth", "x4"),
        ("x2.safetensors", "x2"),
    ] {
        let up = Upscaler::load(&data().join(file), &Device::Cpu).unwrap();
        assert_eq!(up.scale, if key == "x4" { 4 } else { 2 });
        let ours = up.forward(&io["image"]).unwrap();
        common::check(file, &ours, &io[key], 1e-4);
    }
}

#[test]
fn tiles_with_enough_context_give_the_whole_image() {
    let io = reference();
    let up = Upscaler::load(&data().join("x4.safetensors"), &Device::Cpu).unwrap();
    // The picture of the reference input, rounded to 8 bits.
    let pixels: Vec<u8> = (io["image"].permute((0, 2, 3, 1)).unwrap() * 255.0)
        .unwrap()
        .round()
        .unwrap()
        .to_dtype(DType::U8)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let picture = Picture::from_pixels(24, 20, pixels);
    let whole = up.upscale(&picture, &Device::Cpu).unwrap();
    assert_eq!((whole.width, whole.height), (96, 80));
    // 8-pixel tiles with 40 pixels of context: more than the tiny net sees.
    let tiled = Upscaler::load(&data().join("x4.safetensors"), &Device::Cpu)
        .unwrap()
        .with_tiles(8, 40)
        .upscale(&picture, &Device::Cpu)
        .unwrap();
    let worst = whole
        .rgb
        .iter()
        .zip(&tiled.rgb)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= 1, "tiles differ from the whole by {worst}");
    // Without context the tiles show: the check above is not trivially true.
    let seams = Upscaler::load(&data().join("x4.safetensors"), &Device::Cpu)
        .unwrap()
        .with_tiles(8, 0)
        .upscale(&picture, &Device::Cpu)
        .unwrap();
    assert_ne!(seams.rgb, whole.rgb);
}

#[test]
fn a_file_that_is_not_an_upscaler_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = common::write_safetensors(
        dir.path(),
        "vae.safetensors",
        &[(
            "decoder.conv_in.weight",
            Tensor::zeros((4, 4, 3, 3), DType::F32, &Device::Cpu).unwrap(),
        )],
    );
    let err = Upscaler::load(&file, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not an ESRGAN (RRDBNet) upscaler"), "{err}");
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"not a zip").unwrap();
    let err = Upscaler::load(&junk, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("junk.pth"), "{err}");
}
