//! Full-size SD 1.5 shapes with random weights (no download): seconds per UNet step (batch 2 for
//! CFG, 64×64 latent), VAE decode at 512² and 1024², text encoding, and peak RSS (the 1024²
//! decode is left out of the peak: the figure compares the 512² pipeline); with `--sdxl`, also
//! the SDXL base UNet step (batch 2, 128×128 latent, its config from the built-in set).
//!
//! `cargo bench -p selfdiffusion-engine --bench sd15 -- [--device cpu|cuda] [--steps N] [--sdxl] [--json FILE]`
//! `… --bench sd15 -- --end-to-end DIR [--steps N] [--low-memory] [--half-weights]` instead loads the diffusers folder `DIR` and
//! makes one 512² image, reporting the whole process's wall time and peak RSS, and the peak
//! after loading beside the size of the weight files.
//! `benches/compare.sh` runs this and the diffusers equivalent in one go and prints the ratios.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use selfdiffusion_engine::config::{ClipTextConfig, UNetConfig, VaeConfig};
use selfdiffusion_engine::{
    default_dtype, AddedCond, ClipTextEncoder, Control, DeviceChoice, ModelSpec, Precision,
    Request, UNet, VaeDecoder,
};

const CLIP: &str = r#"{"hidden_act": "quick_gelu", "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
  "num_hidden_layers": 12, "max_position_embeddings": 77, "vocab_size": 49408}"#;
const UNET: &str = r#"{"act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
  "cross_attention_dim": 768, "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  "in_channels": 4, "out_channels": 4, "layers_per_block": 2, "norm_num_groups": 32}"#;
/// SDXL base's UNet config, the one the engine ships for SDXL single files.
const SDXL_UNET: &str = include_str!("../configs/sdxl/unet/config.json");
const VAE: &str = r#"{"block_out_channels": [128, 256, 512, 512], "in_channels": 3, "out_channels": 3, "latent_channels": 4,
  "layers_per_block": 2, "norm_num_groups": 32}"#;

/// Peak resident memory of this process in MiB (Linux), if known.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Starts a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The CPU's model name (Linux `/proc/cpuinfo`), so figures from different machines are told
/// apart; ratios against diffusers in the same run are what compare.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

/// The SIMD extensions this CPU offers that the matrix kernels can use.
fn simd_flags() -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut flags = Vec::new();
        if std::arch::is_x86_feature_detected!("avx2") {
            flags.push("avx2");
        }
        if std::arch::is_x86_feature_detected!("fma") {
            flags.push("fma");
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            flags.push("avx512f");
        }
        flags
    }
    #[cfg(target_arch = "aarch64")]
    {
        vec!["neon"]
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        Vec::new()
    }
}

fn sync(t: &Tensor) {
    // Reading one value back waits for the device.
    let _ = t
        .flatten_all()
        .and_then(|f| f.get(0))
        .and_then(|v| v.to_dtype(DType::F32))
        .and_then(|v| v.to_scalar::<f32>());
}

/// Runs `f` once to warm up, then `n` times; returns mean seconds.
fn time<T>(n: usize, mut f: impl FnMut() -> T, done: impl Fn(&T)) -> f64 {
    done(&f());
    let start = Instant::now();
    for _ in 0..n {
        done(&f());
    }
    start.elapsed().as_secs_f64() / n as f64
}

/// The random weights of `vm` as a builder of detached tensors, as if read from a file:
/// computing on `Var`s would record a backprop graph and keep every intermediate alive.
fn detached(vm: VarMap, dtype: DType, device: &candle_core::Device) -> VarBuilder<'static> {
    let tensors: HashMap<String, Tensor> = vm
        .data()
        .lock()
        .expect("the varmap lock is not poisoned")
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
        .collect();
    VarBuilder::from_tensors(tensors, dtype, device)
}

/// Seconds per SDXL base UNet step (batch 2, 128×128 latent, its pooled text and size ids),
/// and the UNet's parameter count (diffusers' side reports its own: equal counts mean the
/// same architecture was built from the config).
fn sdxl_unet_step(
    device: &candle_core::Device,
    dtype: DType,
    steps: usize,
) -> Result<(f64, usize), Box<dyn std::error::Error>> {
    eprintln!("building the SDXL UNet with random weights…");
    let config: UNetConfig = serde_json::from_str(SDXL_UNET)?;
    let vm = VarMap::new();
    UNet::new(VarBuilder::from_varmap(&vm, dtype, device), &config)?;
    let params: usize = vm
        .all_vars()
        .iter()
        .map(|v| v.as_tensor().elem_count())
        .sum();
    let unet = UNet::new(detached(vm, dtype, device), &config)?;
    let latents = Tensor::randn(0f32, 1.0, (2, 4, 128, 128), device)?.to_dtype(dtype)?;
    let context = Tensor::randn(0f32, 1.0, (2, 77, 2048), device)?.to_dtype(dtype)?;
    let added = AddedCond {
        text_embeds: Tensor::randn(0f32, 1.0, (2, 1280), device)?.to_dtype(dtype)?,
        time_ids: Tensor::new(&[1024f32, 1024., 0., 0., 1024., 1024.], device)?
            .unsqueeze(0)?
            .repeat((2, 1))?,
    };
    let step = time(
        steps,
        || {
            unet.forward(&latents, 500.0, &context, Some(&added))
                .unwrap()
        },
        sync,
    );
    Ok((step, params))
}

/// The size of the `.safetensors` files under `dir`, in MiB.
fn weight_files_mib(dir: &std::path::Path) -> std::io::Result<f64> {
    Ok(weight_file_bytes(dir)? as f64 / 1048576.0)
}

/// The size of the `.safetensors` files under `dir`, in bytes.
fn weight_file_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            bytes += weight_file_bytes(&path)?;
        } else if path.extension().is_some_and(|e| e == "safetensors") {
            bytes += path.metadata()?.len();
        }
    }
    Ok(bytes)
}

/// Loads the diffusers folder `dir` and makes one 512² image in `steps` steps, as the app
/// would (with its low-memory and half-precision-weights options as asked); reports this
/// process's wall time (from its start) and peak RSS.
fn end_to_end(
    dir: &str,
    steps: usize,
    (low_memory, half_weights): (bool, bool),
    device: &candle_core::Device,
    started: Instant,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let precision = Precision::new(default_dtype(device), half_weights);
    let model = ModelSpec::folder(dir).load(device, precision)?;
    model.set_free_text_after_encoding(low_memory);
    let load_peak = peak_rss_mib();
    let weights_mib = weight_files_mib(std::path::Path::new(dir))?;
    let request = Request {
        prompt: "a lighthouse on a cliff at dawn".into(),
        steps,
        guidance: 7.5,
        seed: 1,
        ..Request::default()
    };
    let mut images = 0;
    model.generate(&request, &Control::default(), &mut |_| {}, &mut |_| {
        images += 1;
        Ok(())
    })?;
    assert_eq!(images, 1);
    // Each option's runs report under their own keys, beside the ordinary run's.
    let key = |name: &str| {
        let mut key = name.to_owned();
        if low_memory {
            key.push_str("_low_memory");
        }
        if half_weights {
            key.push_str("_half_weights");
        }
        key
    };
    let mut report = serde_json::json!({
        "implementation": "selfdiffusion (candle)",
        "load_peak_rss_mib": load_peak,
        "weights_mib": weights_mib,
        "threads": selfdiffusion_engine::threads(),
        "cpu_model": cpu_model(),
        "simd": simd_flags(),
    });
    report[key("end_to_end_s")] = started.elapsed().as_secs_f64().into();
    report[key("end_to_end_peak_rss_mib")] = peak_rss_mib().into();
    Ok(report)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    // As the engine's loaders do; the random-weight models below are built without them.
    selfdiffusion_engine::tune_allocator();
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let device = DeviceChoice::parse(&arg("--device").unwrap_or_else(|| "cpu".into()))?.open()?;
    let dtype = default_dtype(&device);
    let steps: usize = arg("--steps").map(|s| s.parse()).transpose()?.unwrap_or(3);
    if let Some(dir) = arg("--end-to-end") {
        let flag = |name: &str| args.iter().any(|a| a == name);
        let options = (flag("--low-memory"), flag("--half-weights"));
        let report = end_to_end(&dir, steps, options, &device, started)?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        if let Some(path) = arg("--json") {
            std::fs::write(path, serde_json::to_string(&report)?)?;
        }
        return Ok(());
    }
    let device_name = if device.is_cpu() {
        "cpu".to_string()
    } else {
        format!("{device:?}")
    };
    eprintln!("building SD 1.5-sized models with random weights on {device_name} ({dtype:?})…");

    // Random weights come from a VarMap; the models then load detached copies.
    let vm = VarMap::new();
    let clip_cfg: ClipTextConfig = serde_json::from_str(CLIP)?;
    let unet_cfg: UNetConfig = serde_json::from_str(UNET)?;
    let vae_cfg: VaeConfig = serde_json::from_str(VAE)?;
    ClipTextEncoder::new(VarBuilder::from_varmap(&vm, dtype, &device), &clip_cfg)?;
    UNet::new(
        VarBuilder::from_varmap(&vm, dtype, &device).pp("unet"),
        &unet_cfg,
    )?;
    VaeDecoder::new(
        VarBuilder::from_varmap(&vm, dtype, &device).pp("vae"),
        &vae_cfg,
    )?;
    let vb = detached(vm, dtype, &device);
    let clip = ClipTextEncoder::new(vb.clone(), &clip_cfg)?;
    let unet = UNet::new(vb.pp("unet"), &unet_cfg)?;
    let vae = VaeDecoder::new(vb.pp("vae"), &vae_cfg)?;

    let weights_rss = peak_rss_mib();
    let ids = Tensor::arange(0u32, 77, &device)?
        .unsqueeze(0)?
        .repeat((2, 1))?;
    reset_peak();
    let text = time(steps, || clip.forward(&ids).unwrap(), sync);
    let text_rss = peak_rss_mib();
    let context = clip.forward(&ids)?;
    let latents = Tensor::randn(0f32, 1.0, (2, 4, 64, 64), &device)?.to_dtype(dtype)?;
    reset_peak();
    let unet_step = time(
        steps,
        || unet.forward(&latents, 500.0, &context, None).unwrap(),
        sync,
    );
    let unet_rss = peak_rss_mib();
    let one = Tensor::randn(0f32, 1.0, (1, 4, 64, 64), &device)?.to_dtype(dtype)?;
    reset_peak();
    let decode = time(steps.min(2), || vae.decode(&one).unwrap(), sync);
    let vae_rss = peak_rss_mib();
    let big = Tensor::randn(0f32, 1.0, (1, 4, 128, 128), &device)?.to_dtype(dtype)?;
    let decode_1024 = time(1, || vae.decode(&big).unwrap(), sync);

    drop((clip, unet, vae));
    let (sdxl_step, sdxl_params) = if args.iter().any(|a| a == "--sdxl") {
        let (step, params) = sdxl_unet_step(&device, dtype, steps)?;
        (Some(step), Some(params))
    } else {
        (None, None)
    };

    let peak = [weights_rss, text_rss, unet_rss, vae_rss]
        .into_iter()
        .flatten()
        .fold(0.0, f64::max);
    let report = serde_json::json!({
        "implementation": "selfdiffusion (candle)",
        "device": device_name,
        "dtype": format!("{dtype:?}").to_lowercase(),
        "text_encode_batch2_s": text,
        "unet_step_batch2_64x64_s": unet_step,
        "vae_decode_512_s": decode,
        "vae_decode_1024_s": decode_1024,
        "peak_rss_mib": peak,
        "peak_rss_after_weights_mib": weights_rss,
        "peak_rss_text_mib": text_rss,
        "peak_rss_unet_mib": unet_rss,
        "peak_rss_vae_mib": vae_rss,
        "unet_step_sdxl_batch2_128x128_s": sdxl_step,
        "unet_sdxl_params": sdxl_params,
        "threads": selfdiffusion_engine::threads(),
        "cpu_model": cpu_model(),
        "simd": simd_flags(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = arg("--json") {
        std::fs::write(path, serde_json::to_string(&report)?)?;
    }
    Ok(())
}
