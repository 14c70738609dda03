//! `selfdiffusion-cli upscale`: an image made 2 or 4 times larger, with an ESRGAN model or by
//! Lanczos resampling, its recipe carried over.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use selfdiffusion_engine::{upscale, DeviceChoice, Picture, Upscaler, MAX_INPUT_PIXELS};
use selfdiffusion_recipe::{embedded_recipe, encode_png};
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
    let model = args
        .model
        .as_ref()
        .map(|file| -> Result<_> {
            let device = DeviceChoice::parse(&args.device)?.open()?;
            Ok((Upscaler::load(file, &device)?, device))
        })
        .transpose()?;
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} upscaling [{bar:30}] {pos}/{len} tiles, ETA {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let (larger, how) = upscale(
        &picture,
        args.factor,
        model.as_ref().map(|(model, device)| (model, device)),
        MAX_INPUT_PIXELS,
        // Ctrl-C ends the process: nothing is written before the image is whole.
        &AtomicBool::new(false),
        &mut |p| {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
        },
    )?;
    bar.finish_and_clear();
    let (width, height, upscaler) = (larger.width, larger.height, how.upscaler.clone());
    // The recipe stays the one that makes the source (as AUTOMATIC1111's Extras keep it); the
    // upscale says how it was enlarged.
    let mut recipe = embedded_recipe(&bytes).unwrap_or_default();
    recipe.upscale = Some(how);
    let png = encode_png(width as u32, height as u32, &larger.rgb, &recipe)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let stem = args
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let path = crate::generate::write_new(&args.out, &format!("{stem}-x{}", args.factor), &png)?;
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
