//! SelfDiffusion's local engine: Stable Diffusion 1.x / 2.x / XL / Turbo on candle, computing the same
//! function as diffusers, with reproducible seeds, per-step progress and cancellation.
//!
//! candle-transformers supplies the VAE (built from the model's config); the CLIP text encoder,
//! the UNet, the schedulers, the noise and the loop are ours, because candle's are closed or
//! differ from diffusers (see `unet.rs` and `shared/notes/candle.md`).

mod base_weights;
mod builtin_configs;
mod clip;
pub mod config;
mod device;
mod engine;
mod error;
mod lora;
mod model;
mod noise;
mod pipeline;
mod preview;
pub mod schedulers;
mod single_file;
mod text;
mod tokenizer;
mod unet;

pub use builtin_configs::BuiltinConfig;
pub use clip::{ClipTextEncoder, EncodedText, HiddenStates};
pub use device::{default_dtype, DeviceChoice};
pub use engine::Engine;
pub use error::{EngineError, Result};
pub use lora::{lora_family, LoraFile, Loras};
pub use model::{
    family_of_configs, limits_of, model_limits, vae_config, ModelFacts, ModelPath, ModelSpec,
    StableDiffusion,
};
pub use noise::{GivenLatents, NoiseSource, SeededNoise};
pub use pipeline::{
    load_latents, Conditioning, Control, GeneratedImage, Generation, ImageSink, NoObserver,
    Observer, Phase, Progress, Request, LIMITS,
};
pub use preview::Preview;
pub use schedulers::SchedulerKind;
pub use selfdiffusion_recipe::{Limits, Recipe};
pub use single_file::{Checkpoint, Family};
pub use text::{PromptEmbedding, TextEncoders, TextStack};
pub use tokenizer::{PromptTokenizer, Tokens};
pub use unet::{AddedCond, UNet};

/// Re-exported so callers can build tensors and pick dtypes without naming candle themselves.
pub use candle_core::{DType, Device, Tensor};
