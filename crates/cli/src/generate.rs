//! `selfdiffusion-cli generate`: local text to image, img2img, inpainting and outpainting, with a
//! terminal progress bar.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use selfdiffusion_engine::{
    default_dtype, half_weights_requested, low_memory_requested, Control, DeviceChoice, ImageInput,
    Mask, ModelSpec, Phase, Picture, Precision, Request, SchedulerKind, MAX_INPUT_PIXELS,
};
use selfdiffusion_files::{write_atomic, Access};
use selfdiffusion_recipe::{encode_png, random_seed, take_lora_tags, HiresFix, SizeConditions};
use serde::Serialize;

/// Options of `generate`.
#[derive(Args)]
pub struct GenerateArgs {
    /// The prompt.
    prompt: String,
    /// The negative prompt.
    #[arg(long, default_value = "")]
    negative: String,
    /// A catalog id (downloaded), an imported model id, a diffusers model folder, or a
    /// single-file `.safetensors` checkpoint (then give `--config`).
    #[arg(long)]
    model: PathBuf,
    /// For a single-file checkpoint: its configs and tokenizer, as diffusers'
    /// `from_single_file(config=…)` takes them: a built-in set (`sd15`, `sd21-v`, `sd21-base`,
    /// `sdxl`), or a diffusers folder (or catalog id) of the same family. Default: the built-in
    /// set of the file's family.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Denoising steps (1–150).
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// Guidance scale (≤ 1 turns classifier-free guidance off).
    #[arg(long, default_value_t = 7.5)]
    guidance: f64,
    /// Seed of the first image (random when absent); image k uses seed + k.
    #[arg(long)]
    seed: Option<u64>,
    /// Width in pixels (multiple of 8; default 512, or the size of `--init-image`).
    #[arg(long)]
    width: Option<usize>,
    /// Height in pixels (multiple of 8; default 512, or the size of `--init-image`).
    #[arg(long)]
    height: Option<usize>,
    /// Number of images.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// A LoRA `.safetensors` file merged into the model, with its weight (`FILE:0.8`; 1 when
    /// omitted, negative to subtract). Repeat for several.
    #[arg(long = "lora", value_name = "FILE[:WEIGHT]")]
    loras: Vec<String>,
    /// Scheduler: ddim, euler, euler_a, dpmpp_2m_karras (default: the model's own).
    #[arg(long)]
    scheduler: Option<String>,
    /// Folder for the PNGs.
    #[arg(long)]
    out: PathBuf,
    /// Initial latents (safetensors, key `latents`) instead of seeded noise for the first image.
    #[arg(long)]
    latents: Option<PathBuf>,
    /// Start from this image (PNG, JPEG or WebP): img2img, or inpainting with `--mask`.
    #[arg(long, value_name = "FILE")]
    init_image: Option<PathBuf>,
    /// How much of the init image is redrawn, 0 to 1 (default 0.75; 1 with `--mask` or
    /// `--outpaint`).
    #[arg(long)]
    strength: Option<f64>,
    /// The part of the init image to repaint: a greyscale image, white repaints (≥ 128).
    #[arg(long, value_name = "FILE")]
    mask: Option<PathBuf>,
    /// Extend the init image by these pixels left, right, top and bottom and paint them.
    #[arg(long, value_name = "L,R,T,B", value_parser = parse_margins)]
    outpaint: Option<[u32; 4]>,
    /// With `--mask` or `--outpaint`: put the image's own pixels back outside the mask after
    /// decoding, across an edge blurred by BLUR pixels (4 when no number is given).
    #[arg(long, value_name = "BLUR", num_args = 0..=1, default_missing_value = "4")]
    paste_back: Option<u32>,
    /// Hires fix: a second pass this many times larger (1 to 4, Lanczos), redrawn at
    /// `--hires-strength`.
    #[arg(long, value_name = "FACTOR")]
    hires: Option<f64>,
    /// How much the hires pass redraws, 0 to 1.
    #[arg(long, default_value_t = 0.4, requires = "hires")]
    hires_strength: f64,
    /// The noise img2img and inpainting draw (safetensors with diffusers' names
    /// `add_noise_noise`, `vae_sample_noise`) instead of seeded noise, for parity checks.
    #[arg(long, value_name = "FILE")]
    noise: Option<PathBuf>,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Free the text encoders once the prompts are encoded, so denoising holds only the UNet
    /// and the VAE (also `SELFDIFFUSION_LOW_MEMORY=1`).
    #[arg(long)]
    low_memory: bool,
    /// Keep the weight matrices in f16 while computing in f32: half the memory, a little
    /// slower, images within f16 rounding of full precision (also
    /// `SELFDIFFUSION_HALF_WEIGHTS=1`).
    #[arg(long)]
    half_weights: bool,
    /// SDXL: the original size the model is told of, `HxW` (default: the image's size).
    #[arg(long, value_name = "HxW", value_parser = SizeConditions::parse_pair)]
    original_size: Option<[u32; 2]>,
    /// SDXL: the crop's top-left corner the model is told of, `T,L` (default: 0,0).
    #[arg(long, value_name = "T,L", value_parser = SizeConditions::parse_pair)]
    crop_top_left: Option<[u32; 2]>,
    /// SDXL: the target size the model is told of, `HxW` (default: the image's size).
    #[arg(long, value_name = "HxW", value_parser = SizeConditions::parse_pair)]
    target_size: Option<[u32; 2]>,
}

/// `L,R,T,B` pixel counts.
fn parse_margins(text: &str) -> std::result::Result<[u32; 4], String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let numbers: Vec<u32> = parts
        .iter()
        .map(|p| p.parse::<u32>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| format!("{text:?}: give four pixel counts, LEFT,RIGHT,TOP,BOTTOM"))?;
    <[u32; 4]>::try_from(numbers)
        .map_err(|_| format!("{text:?}: give four pixel counts, LEFT,RIGHT,TOP,BOTTOM"))
}

/// The image input `args` describe, if any: decoded, extended for an outpaint.
fn image_input(args: &GenerateArgs) -> Result<Option<ImageInput>> {
    let Some(path) = &args.init_image else {
        for (given, flag) in [
            (args.strength.is_some(), "--strength"),
            (args.mask.is_some(), "--mask"),
            (args.outpaint.is_some(), "--outpaint"),
            (args.paste_back.is_some(), "--paste-back"),
        ] {
            anyhow::ensure!(!given, "{flag} goes with --init-image");
        }
        return Ok(None);
    };
    let picture = Picture::open(path, MAX_INPUT_PIXELS)?;
    let (image, mask) = match (args.outpaint, &args.mask) {
        (Some(_), Some(_)) => anyhow::bail!("give --mask or --outpaint, not both"),
        (Some(margins), None) => {
            let (canvas, mask) = picture.extended(margins, MAX_INPUT_PIXELS)?;
            (canvas, Some(mask))
        }
        (None, Some(mask)) => (picture, Some(Mask::open(mask, MAX_INPUT_PIXELS)?)),
        (None, None) => (picture, None),
    };
    let strength = args
        .strength
        .unwrap_or(if mask.is_some() { 1.0 } else { 0.75 });
    Ok(Some(ImageInput {
        image: Arc::new(image),
        strength,
        mask: mask.map(Arc::new),
        outpaint: args.outpaint,
        paste_back: args.paste_back,
    }))
}

/// One written image.
#[derive(Serialize)]
struct Written {
    path: PathBuf,
    seed: u64,
    width: usize,
    height: usize,
}

/// The JSON report of a run.
#[derive(Serialize)]
struct Report {
    images: Vec<Written>,
    scheduler: &'static str,
    prompt_truncated: bool,
    stopped_early: bool,
    /// Inputs resized to the request's size.
    resized: Vec<String>,
}

/// A `--lora` argument: a file or an imported LoRA's name, and the weight after its last `:`
/// (1 when there is none).
fn lora_spec(spec: &str) -> Result<(PathBuf, f64)> {
    let (what, weight) = match spec.rsplit_once(':') {
        Some((what, weight)) if !what.is_empty() && weight.parse::<f64>().is_ok() => {
            let weight: f64 = weight.parse()?;
            anyhow::ensure!(
                weight.is_finite(),
                "--lora {spec}: the weight must be a number"
            );
            (what, weight)
        }
        _ => (spec, 1.0),
    };
    let file = PathBuf::from(what);
    if file.is_file() {
        return Ok((file, weight));
    }
    Ok((crate::models::lora_library()?.resolve(what)?, weight))
}

/// Writes `bytes` as `<stem>.png` in `dir` (or `<stem>-2.png`… when taken), atomically, so a
/// half-written PNG never has the final name.
pub(crate) fn write_new(dir: &Path, stem: &str, bytes: &[u8]) -> Result<PathBuf> {
    let mut path = dir.join(format!("{stem}.png"));
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{stem}-{n}.png"));
        n += 1;
    }
    write_atomic(&path, bytes, Access::Default)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Runs a generation and writes one PNG per image, recipe embedded.
pub fn run(args: GenerateArgs, json: bool) -> Result<()> {
    let scheduler = args
        .scheduler
        .as_deref()
        .map(SchedulerKind::parse)
        .transpose()?;
    let device = DeviceChoice::parse(&args.device)?.open()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let seed = args.seed.unwrap_or_else(random_seed);
    let init = image_input(&args)?;
    // The size of the image to start from, unless given.
    // The size of the image to start from unless given (rounded down to the model's step
    // once the model is known), else 512².
    let image_size = init.as_ref().map(|i| (i.image.width, i.image.height));
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new((args.steps * args.count) as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg:<24} [{bar:30}] {pos}/{len} steps, ETA {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message("loading model");
    let dtype = default_dtype(&device);
    // The model, its config for a single file, and the LoRAs: from --lora and from the prompt's
    // <lora:name:weight> tags (taken out of the text the model reads).
    let (prompt, tags) = take_lora_tags(&args.prompt);
    let mut spec = if args.model.is_file() {
        ModelSpec {
            path: args.model.clone(),
            config: Some(crate::models::checkpoint_config(
                &args.model,
                args.config.as_deref(),
            )?),
            loras: Vec::new(),
        }
    } else {
        if args.config.is_some() {
            anyhow::bail!(
                "--config goes with a single-file checkpoint; {} is not a file",
                args.model.display()
            );
        }
        crate::models::resolve(&args.model)?
    };
    for spec_arg in &args.loras {
        spec.loras.push(lora_spec(spec_arg)?);
    }
    for tag in tags {
        spec.loras.push((
            crate::models::lora_library()?.resolve(&tag.name)?,
            tag.weight,
        ));
    }
    let precision = Precision::new(dtype, args.half_weights || half_weights_requested());
    let model = spec.load(&device, precision).with_context(|| match &args.config {
        None if args.model.is_file() => format!(
            "{} did not load with the built-in configs of its family; if it is a fine-tune with other sizes, give its own with --config DIR",
            args.model.display()
        ),
        _ => format!("cannot load {}", args.model.display()),
    })?;
    model.set_free_text_after_encoding(args.low_memory || low_memory_requested());
    let step = model.limits().side_step as usize;
    let round = |side: usize| (side / step * step).max(step);
    let (width, height) = match image_size {
        Some((w, h)) => (
            args.width.unwrap_or_else(|| round(w)),
            args.height.unwrap_or_else(|| round(h)),
        ),
        None => (args.width.unwrap_or(512), args.height.unwrap_or(512)),
    };
    let request = Request {
        prompt,
        negative_prompt: args.negative.clone(),
        steps: args.steps,
        guidance: args.guidance,
        seed,
        width,
        height,
        count: args.count,
        scheduler,
        init_latents: args.latents.clone(),
        noise: args.noise.clone(),
        init,
        hires: args.hires.map(|factor| HiresFix {
            factor,
            strength: args.hires_strength,
        }),
        preview_every: 0,
        size_conditions: SizeConditions {
            original_size: args.original_size,
            crop_top_left: args.crop_top_left,
            target_size: args.target_size,
        },
    };
    // The recipe names the model as the user knows it: the folder's or the file's name.
    let name = if args.model.is_file() {
        args.model.file_stem()
    } else {
        args.model.file_name()
    };
    let model_name = name
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| args.model.display().to_string());
    let mut written = Vec::new();
    bar.set_length((request.steps_run() * args.count) as u64);
    let generation = model.generate(
        &request,
        &Control::default(),
        &mut |p| {
            let label = match p.phase {
                Phase::LoadingModel => "loading model".to_string(),
                Phase::EncodingPrompt => "encoding prompt".to_string(),
                Phase::Denoising => format!("image {}/{}", p.image + 1, p.images),
                Phase::Decoding => format!("decoding {}/{}", p.image + 1, p.images),
            };
            bar.set_message(label);
            bar.set_position((p.image * p.steps + p.step) as u64);
        },
        &mut |image| {
            let mut recipe = request.recipe(&image, &model_name, "local");
            recipe.set_user_prompts(&args.prompt, &args.negative);
            let png = encode_png(image.width as u32, image.height as u32, &image.rgb, &recipe)
                .map_err(|e| e.to_string())?;
            let path = write_new(&args.out, &image.seed.to_string(), &png)
                .map_err(|e| format!("{e:#}"))?;
            if !json {
                println!("{}", path.display());
            }
            written.push(Written {
                path,
                seed: image.seed,
                width: image.width,
                height: image.height,
            });
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    if generation.prompt_truncated {
        eprintln!("warning: the prompt is longer than the model reads; its end was cut");
    }
    for note in &generation.resized {
        eprintln!("note: {note}");
    }
    if json {
        let report = Report {
            images: written,
            scheduler: generation.scheduler.name(),
            prompt_truncated: generation.prompt_truncated,
            stopped_early: generation.stopped_early,
            resized: generation.resized,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
