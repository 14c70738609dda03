//! Helpers for the engine's tests: locating the shared fixture and building a tiny random model.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{VarBuilder, VarMap};
use selfdiffusion_engine::config::{ClipTextConfig, UNetConfig, VaeConfig};
use selfdiffusion_engine::{
    ClipTextEncoder, Control, GeneratedImage, NoiseSource, Observer, Request, StableDiffusion,
    UNet, Vae,
};

/// The shared fixture `name` (a folder of `shared/fixtures`), if present.
/// Under `CI=true` a missing fixture is a failure; elsewhere the caller skips with the returned
/// message.
pub fn named_fixture(name: &str) -> Result<PathBuf, String> {
    let candidates = std::env::var_os("SELFDIFFUSION_FIXTURES")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/fixtures")),
        )
        .chain(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("../shared/fixtures")),
        );
    for base in candidates {
        let dir = base.join(name);
        if dir.join("README.md").is_file() {
            return Ok(dir);
        }
    }
    let msg = format!("fixture {name} not found (set SELFDIFFUSION_FIXTURES to the folder holding it, or keep ../shared beside the checkout)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}; under CI=true the parity tests must run");
    }
    Err(msg)
}

/// The diffusers parity fixture `tiny-sd15`, if present (see [`named_fixture`]).
pub fn fixture() -> Result<PathBuf, String> {
    named_fixture("tiny-sd15")
}

/// The SDXL parity fixture `tiny-sdxl`, if present (see [`named_fixture`]).
pub fn sdxl_fixture() -> Result<PathBuf, String> {
    named_fixture("tiny-sdxl")
}

/// The request of the fixture's reference runs (see tiny-sd15's README): its prompt, no
/// negative prompt, 4 steps at guidance 7.5, 64×64.
pub fn fixture_request() -> Request {
    Request {
        prompt: "a photograph of an astronaut riding a horse on mars".into(),
        negative_prompt: String::new(),
        steps: 4,
        guidance: 7.5,
        width: 64,
        height: 64,
        ..Request::default()
    }
}

/// Writes `tensors` as the safetensors file `name` in `dir`; returns its path.
pub fn write_safetensors(dir: &Path, name: &str, tensors: &[(&str, Tensor)]) -> PathBuf {
    let map: std::collections::HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, t)| (k.to_string(), t.clone()))
        .collect();
    let path = dir.join(name);
    candle_core::safetensors::save(&map, &path).unwrap();
    path
}

/// Writes a LoRA for [`tiny_model`] at `path`: rank 2 on its first conv, all zeros, so images
/// are the base model's while the LoRA is still merged and recorded.
pub fn tiny_lora(path: &Path) {
    let zeros = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
    let dir = path.parent().unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    write_safetensors(
        dir,
        name,
        &[
            ("lora_unet_conv_in.lora_down.weight", zeros(&[2, 4, 3, 3])),
            ("lora_unet_conv_in.lora_up.weight", zeros(&[16, 2, 1, 1])),
        ],
    );
}

/// Largest absolute difference between two tensors of the same shape (on any devices).
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let on_cpu = |t: &Tensor| {
        t.to_dtype(DType::F32)
            .unwrap()
            .to_device(&Device::Cpu)
            .unwrap()
    };
    max_abs(&(on_cpu(a) - on_cpu(b)).unwrap())
}

/// The accelerator the device parity tests run on, from `SELFDIFFUSION_TEST_DEVICE` (`cuda`,
/// `cuda:N` or `metal`; `scripts/gpu-check.sh` sets it); `None` when unset, and those tests
/// skip.
pub fn test_device() -> Option<Device> {
    let name = std::env::var("SELFDIFFUSION_TEST_DEVICE").ok()?;
    let device = selfdiffusion_engine::DeviceChoice::parse(&name)
        .and_then(|choice| choice.open())
        .unwrap_or_else(|e| panic!("SELFDIFFUSION_TEST_DEVICE={name}: {e}"));
    Some(device)
}

/// Largest absolute value of a tensor.
pub fn max_abs(t: &Tensor) -> f32 {
    t.to_dtype(DType::F32)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Every tensor of a safetensors file.
pub fn load_tensors(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

/// Fails the test when `ours` is further than `tol` from `reference`; prints the distance.
pub fn check(stage: &str, ours: &Tensor, reference: &Tensor, tol: f32) {
    let d = max_diff(ours, reference);
    assert!(d <= tol, "{stage}: max |diff| = {d:e} exceeds {tol:e}");
    eprintln!("{stage}: max |diff| = {d:.2e}");
}

/// The one image `request` makes on `model`.
pub fn one_image(model: &StableDiffusion, request: &Request) -> GeneratedImage {
    let mut images = Vec::new();
    model
        .generate(request, &Control::default(), &mut |_| {}, &mut |image| {
            images.push(image);
            Ok(())
        })
        .unwrap();
    assert_eq!(images.len(), 1);
    images.pop().unwrap()
}

/// Records every stage a parity test compares with diffusers.
#[derive(Default)]
pub struct Recorder {
    /// Token ids of the prompt and the negative prompt (first tokenizer).
    pub tokens: Option<(Vec<u32>, Vec<u32>)>,
    pub cond: Option<Tensor>,
    pub uncond: Option<Tensor>,
    /// UNet input, timestep and output per step.
    pub unet: Vec<(Tensor, f64, Tensor)>,
    pub guided: Vec<Tensor>,
    pub latents: Vec<Tensor>,
    pub image: Option<Tensor>,
    /// The latents the loop started from.
    pub start: Option<Tensor>,
}

impl Observer for Recorder {
    fn tokens(&mut self, cond: &[u32], uncond: &[u32]) {
        self.tokens = Some((cond.to_vec(), uncond.to_vec()));
    }
    fn embeddings(&mut self, cond: &Tensor, uncond: Option<&Tensor>) {
        self.cond = Some(cond.clone());
        self.uncond = uncond.cloned();
    }
    fn start(&mut self, latents: &Tensor) {
        self.start = Some(latents.clone());
    }
    fn unet(&mut self, _i: usize, input: &Tensor, t: f64, output: &Tensor) {
        self.unet.push((input.clone(), t, output.clone()));
    }
    fn guided(&mut self, _i: usize, noise_pred: &Tensor) {
        self.guided.push(noise_pred.clone());
    }
    fn latents(&mut self, _i: usize, latents: &Tensor) {
        self.latents.push(latents.clone());
    }
    fn image(&mut self, image: &Tensor) {
        self.image = Some(image.clone());
    }
}

/// A fixture's fixed noise: initial latents, and Euler ancestral's per-step draws.
pub struct FixtureNoise {
    pub initial: Tensor,
    pub steps: Option<Tensor>,
}

impl NoiseSource for FixtureNoise {
    fn initial(&mut self, shape: &[usize]) -> selfdiffusion_engine::Result<Tensor> {
        assert_eq!(self.initial.dims(), shape);
        Ok(self.initial.clone())
    }
    fn posterior(&mut self, _shape: &[usize]) -> selfdiffusion_engine::Result<Tensor> {
        panic!("text to image encodes no image")
    }
    fn step(&mut self, _shape: &[usize], i: usize) -> selfdiffusion_engine::Result<Tensor> {
        Ok(self
            .steps
            .as_ref()
            .expect("this scheduler draws no step noise")
            .i(i)
            .unwrap())
    }
}

const TEXT_ENCODER: &str = r#"{"architectures": ["CLIPTextModel"], "hidden_act": "quick_gelu", "hidden_size": 16,
  "intermediate_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1, "max_position_embeddings": 16,
  "vocab_size": 12, "layer_norm_eps": 1e-5}"#;
const UNET: &str = r#"{"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 2,
  "block_out_channels": [16, 32], "cross_attention_dim": 16, "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
  "norm_num_groups": 4, "sample_size": 8}"#;
const VAE: &str = r#"{"_class_name": "AutoencoderKL", "block_out_channels": [8, 8, 16, 16], "in_channels": 3, "out_channels": 3,
  "latent_channels": 4, "layers_per_block": 1, "norm_num_groups": 4, "scaling_factor": 0.18215}"#;
const SCHEDULER: &str = r#"{"_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
  "beta_schedule": "scaled_linear", "steps_offset": 1, "timestep_spacing": "leading", "set_alpha_to_one": false}"#;
const TOKENIZER_CONFIG: &str = r#"{"model_max_length": 16, "pad_token": "<|endoftext|>"}"#;

/// A word-level tokenizer with start/end tokens, as a `tokenizer.json`.
fn tokenizer_json() -> String {
    let words = [
        "a", "cat", "dog", "on", "mars", "red", "blue", "photo", "of",
    ];
    let mut vocab = serde_json::Map::new();
    vocab.insert("<|startoftext|>".into(), 0.into());
    vocab.insert("<|endoftext|>".into(), 1.into());
    vocab.insert("<unk>".into(), 2.into());
    for (i, w) in words.iter().enumerate() {
        vocab.insert((*w).into(), (i + 3).into());
    }
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [
            {"id": 0, "content": "<|startoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<|startoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {
                "<|startoftext|>": {"id": "<|startoftext|>", "ids": [0], "tokens": ["<|startoftext|>"]},
                "<|endoftext|>": {"id": "<|endoftext|>", "ids": [1], "tokens": ["<|endoftext|>"]}
            }
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    })
    .to_string()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Writes a complete tiny SD 1.x folder with random weights into `dir`.
pub fn tiny_model(dir: &Path) {
    write(
        &dir.join("model_index.json"),
        r#"{"_class_name": "StableDiffusionPipeline"}"#,
    );
    write(&dir.join("text_encoder/config.json"), TEXT_ENCODER);
    write(&dir.join("unet/config.json"), UNET);
    write(&dir.join("vae/config.json"), VAE);
    write(&dir.join("scheduler/scheduler_config.json"), SCHEDULER);
    write(
        &dir.join("tokenizer/tokenizer_config.json"),
        TOKENIZER_CONFIG,
    );
    write(&dir.join("tokenizer/tokenizer.json"), &tokenizer_json());
    let device = Device::Cpu;

    let vm = VarMap::new();
    let te: ClipTextConfig = serde_json::from_str(TEXT_ENCODER).unwrap();
    ClipTextEncoder::new(VarBuilder::from_varmap(&vm, DType::F32, &device), &te).unwrap();
    vm.save(dir.join("text_encoder/model.safetensors")).unwrap();

    let vm = VarMap::new();
    let un: UNetConfig = serde_json::from_str(UNET).unwrap();
    UNet::new(VarBuilder::from_varmap(&vm, DType::F32, &device), &un).unwrap();
    vm.save(dir.join("unet/diffusion_pytorch_model.safetensors"))
        .unwrap();

    let vm = VarMap::new();
    let va: VaeConfig = serde_json::from_str(VAE).unwrap();
    Vae::new(VarBuilder::from_varmap(&vm, DType::F32, &device), &va).unwrap();
    vm.save(dir.join("vae/diffusion_pytorch_model.safetensors"))
        .unwrap();
}
