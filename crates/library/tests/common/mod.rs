//! Helpers shared by the library's integration tests.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use image::{ImageFormat, Rgb, RgbImage};
use selfdiffusion_library::{ImportOptions, ImportReport, Library, OnDuplicate};
use selfdiffusion_recipe::Recipe;

/// An RGB test image whose pixels depend on `seed`, encoded in `format`.
pub fn image_bytes(seed: u8, format: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(24, 16, |x, y| {
        Rgb([
            seed.wrapping_mul(31).wrapping_add(x as u8 * 7),
            y as u8 * 11,
            seed,
        ])
    });
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

/// A PNG test image.
pub fn png(seed: u8) -> Vec<u8> {
    image_bytes(seed, ImageFormat::Png)
}

/// A recipe with every common field set.
pub fn recipe(prompt: &str, seed: u64) -> Recipe {
    Recipe {
        prompt: prompt.into(),
        negative_prompt: "blurry".into(),
        styles: vec!["Watercolor".into()],
        model: Some("sd-1.5".into()),
        scheduler: Some("ddim".into()),
        steps: Some(20),
        guidance: Some(7.5),
        seed: Some(seed),
        width: Some(512),
        height: Some(512),
        backend: Some("local".into()),
        ..Recipe::default()
    }
}

/// A fresh library in a temp dir.
pub fn library() -> (tempfile::TempDir, Library) {
    let dir = tempfile::tempdir().unwrap();
    let lib = Library::open(dir.path().join("lib")).unwrap();
    (dir, lib)
}

/// Imports paths with a policy, no cancel, no progress.
pub fn import(
    lib: &Library,
    project: i64,
    paths: &[&Path],
    on_duplicate: OnDuplicate,
) -> ImportReport {
    let paths: Vec<_> = paths.iter().map(|p| p.to_path_buf()).collect();
    lib.import_paths(
        project,
        &paths,
        ImportOptions { on_duplicate },
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap()
}
