//! The ESRGAN upscaler against a PyTorch RRDBNet on tiny random weights
//! (`data/make_esrgan_reference.py`): ×4 from safetensors and from a `.pth`, ×2 with its
//! pixel-unshuffled input, and tiles that add nothing of their own.

mod common;

use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Tensor};
use selfdiffusion_engine::{upscaler_scale, EngineError, Picture, UpscaleProgress, Upscaler};

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
        // Read from the file's index alone, as API nodes do.
        assert_eq!(upscaler_scale(&data().join(file)).unwrap(), up.scale);
        let ours = up.forward(&io["image"]).unwrap();
        common::check(file, &ours, &io[key], 1e-4);
    }
}

#[test]
fn tiles_with_enough_context_give_the_whole_image() {
    let io = reference();
    let up = tiny();
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
    let whole = run(&up, &picture);
    assert_eq!((whole.width, whole.height), (96, 80));
    // 8-pixel tiles with 40 pixels of context: more than the tiny net sees.
    let tiled = run(&tiny().with_tiles(8, 40), &picture);
    let worst = whole
        .rgb
        .iter()
        .zip(&tiled.rgb)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= 1, "tiles differ from the whole by {worst}");
    // Without context the tiles show: the check above is not trivially true.
    let seams = run(&tiny().with_tiles(8, 0), &picture);
    assert_ne!(seams.rgb, whole.rgb);
}

/// The tiny ×4 upscaler.
fn tiny() -> Upscaler {
    Upscaler::load(&data().join("x4.safetensors"), &Device::Cpu).unwrap()
}

/// `picture` upscaled by `up` on the CPU, not cancelled.
fn run(up: &Upscaler, picture: &Picture) -> Picture {
    up.upscale(picture, &Device::Cpu, &AtomicBool::new(false), &mut |_| {})
        .unwrap()
}

#[test]
fn each_tile_is_reported_and_a_cancel_stops_before_the_next() {
    // 24×20 in 8-pixel tiles: 3 columns, 3 rows.
    let picture = Picture::from_pixels(24, 20, vec![128; 24 * 20 * 3]);
    let up = tiny().with_tiles(8, 4);
    let mut seen = Vec::new();
    up.upscale(&picture, &Device::Cpu, &AtomicBool::new(false), &mut |p| {
        seen.push(p)
    })
    .unwrap();
    let done: Vec<(usize, usize)> = seen.iter().map(|p| (p.done, p.total)).collect();
    assert_eq!(done, (1..=9).map(|d| (d, 9)).collect::<Vec<_>>());
    assert!(seen.iter().all(|p| p.eta.is_some()));
    assert_eq!(seen[8].eta, Some(std::time::Duration::ZERO));

    // Cancelled while the third tile runs: it finishes, no fourth starts.
    let cancel = AtomicBool::new(false);
    let mut last = None;
    let err = up
        .upscale(
            &picture,
            &Device::Cpu,
            &cancel,
            &mut |p: UpscaleProgress| {
                last = Some(p.done);
                if p.done == 3 {
                    cancel.store(true, Ordering::Relaxed);
                }
            },
        )
        .unwrap_err();
    assert!(matches!(err, EngineError::Cancelled), "{err}");
    assert_eq!(last, Some(3));

    // Lanczos is one tile; a cancelled ESRGAN run through `upscale` is cancelled too.
    let mut lanczos = Vec::new();
    let (larger, how) = selfdiffusion_engine::upscale(
        &picture,
        2,
        None,
        u64::MAX,
        &AtomicBool::new(false),
        &mut |p| lanczos.push((p.done, p.total)),
    )
    .unwrap();
    assert_eq!((larger.width, how.upscaler.as_str()), (48, "lanczos"));
    assert_eq!(lanczos, [(1, 1)]);
    let err = selfdiffusion_engine::upscale(
        &picture,
        4,
        Some((&up, &Device::Cpu)),
        u64::MAX,
        &AtomicBool::new(true),
        &mut |_| panic!("no tile runs"),
    )
    .unwrap_err();
    assert!(matches!(err, EngineError::Cancelled), "{err}");
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
    let err = upscaler_scale(&file).unwrap_err().to_string();
    assert!(err.contains("it has no conv_first weight"), "{err}");
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"not a zip").unwrap();
    let err = Upscaler::load(&junk, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("junk.pth"), "{err}");
    let err = upscaler_scale(&junk).unwrap_err().to_string();
    assert!(err.contains("junk.pth"), "{err}");
}
