//! `selfdiffusion-cli upscale`: an image made 2 or 4 times larger, with an ESRGAN model or by
//! Lanczos resampling, its recipe carried over.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use selfdiffusion_engine::{DeviceChoice, Picture, Upscaler, MAX_INPUT_PIXELS};
use selfdiffusion_recipe::{embedded_recipe, encode_png, Upscale};
use serde::Serialize;

/// Options of `upscale`.
#[derive(Args)]
pub struct UpscaleArgs {
    /// The image (PNG, JPEG or WebP).
    file: PathBuf,
    /// How many times wider and taller: 2 or 4.
    #[arg(long, default_value_t = 2, value_parser = parse_factor)]
    factor: u32,
    /// An ESRGAN (RRDBNet) upscaler, `.safetensors` or `.pth` (Real-ESRGAN's ×4 or ×2
    /// files); without one, Lanczos resampling.
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Folder for the PNG.
    #[arg(long)]
    out: PathBuf,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    device: String,
}

/// 2 or 4.
fn parse_factor(text: &str) -> std::result::Result<u32, String> {
    match text.trim() {
        "2" => Ok(2),
        "4" => Ok(4),
        _ => Err(format!("{text:?}: the factor is 2 or 4")),
    }
}

/// The JSON report.
#[derive(Serialize)]
struct Report {
    path: PathBuf,
    width: usize,
    height: usize,
    upscaler: String,
}

/// Upscales the file and writes `<stem>-x<factor>.png` into the out folder.
pub fn run(args: UpscaleArgs, json: bool) -> Result<()> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let picture = Picture::decode(&bytes, MAX_INPUT_PIXELS)
        .with_context(|| args.file.display().to_string())?;
    let factor = args.factor as usize;
    let (width, height) = (picture.width * factor, picture.height * factor);
    let fits = |scale: usize| {
        let (w, h) = (picture.width * scale, picture.height * scale);
        anyhow::ensure!(
            (w * h) as u64 <= MAX_INPUT_PIXELS,
            "{}×{} upscaled {scale}× is {w}×{h}, more than the {MAX_INPUT_PIXELS} pixels allowed",
            picture.width,
            picture.height
        );
        Ok(())
    };
    fits(factor)?;
    let (larger, upscaler) = match &args.model {
        Some(file) => {
            let device = DeviceChoice::parse(&args.device)?.open()?;
            let model = Upscaler::load(file, &device)?;
            // The model makes its own scale first.
            fits(model.scale)?;
            let upscaled = model.upscale(&picture, &device)?;
            let name = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            // A ×4 model asked for ×2 (or the reverse) is resampled to the size asked for.
            (upscaled.resized(width, height), name)
        }
        None => (picture.resized(width, height), "lanczos".to_owned()),
    };
    // The recipe stays the one that makes the source (as AUTOMATIC1111's Extras keep it); the
    // upscale says how it was enlarged.
    let mut recipe = embedded_recipe(&bytes).unwrap_or_default();
    recipe.upscale = Some(Upscale {
        factor: args.factor,
        upscaler: upscaler.clone(),
        source_sha256: picture.sha256.clone(),
    });
    let png = encode_png(width as u32, height as u32, &larger.rgb, &recipe)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let stem = args
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let path = crate::generate::write_new(&args.out, &format!("{stem}-x{factor}"), &png)?;
    if json {
        let report = Report {
            path,
            width,
            height,
            upscaler,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", path.display());
    }
    Ok(())
}
