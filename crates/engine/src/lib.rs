//! SelfDiffusion's local engine: Stable Diffusion 1.x / 2.x / XL / Turbo on candle, computing the same
//! function as diffusers, with reproducible seeds, per-step progress and cancellation.
//!
//! The CLIP text encoder, the UNet, the VAE decoder, the schedulers, the noise and the loop are
//! ours, because candle-transformers' are closed or differ from diffusers (see `unet.rs` and
//! `shared/notes/candle.md`); so are the CPU kernels of the convolutions, norms, attention and
//! GEGLU (`kernels`), because candle's are several times slower than PyTorch's.

mod allocator;
mod base_weights;
mod builtin_configs;
mod clip;
pub mod config;
mod device;
mod engine;
mod error;
mod half_weights;
mod init_image;
mod kernels;
mod layers;
mod lora;
mod model;
mod noise;
mod pipeline;
mod preview;
pub mod schedulers;
mod single_file;
mod start;
mod text;
mod tokenizer;
mod unet;
mod upscaler;
pub mod vae;
mod weights_file;

pub use allocator::tune_allocator;
pub use builtin_configs::BuiltinConfig;
pub use clip::{ClipTextEncoder, EncodedText, HiddenStates};
pub use device::{default_dtype, DeviceChoice};
pub use engine::{
    half_weights_requested, low_memory_requested, Engine, HALF_WEIGHTS_ENV, LOW_MEMORY_ENV,
};
pub use error::{EngineError, Result};
pub use half_weights::Precision;
pub use init_image::{ImageInput, Mask, Picture, MAX_INPUT_PIXELS};
pub use kernels::threads;
pub use lora::{lora_family, LoraFile, Loras};
pub use model::{
    family_of_configs, limits_of, model_limits, ModelFacts, ModelPath, ModelSpec, StableDiffusion,
};
pub use noise::{load_latents, GivenNoise, NoiseSource, SeededNoise};
pub use pipeline::{
    Conditioning, Control, GeneratedImage, Generation, ImageSink, NoObserver, Observer, Phase,
    Progress, Request, LIMITS,
};
pub use preview::Preview;
pub use schedulers::SchedulerKind;
pub use selfdiffusion_recipe::{HiresFix, Limits, Recipe};
pub use single_file::{Checkpoint, Family};
pub use text::{PromptEmbedding, TextEncoders, TextStack};
pub use tokenizer::{PromptTokenizer, Tokens};
pub use unet::{AddedCond, UNet};
pub use upscaler::{
    check_upscale, upscale, upscaler_scale, UpscaleProgress, Upscaler, UPSCALE_FACTORS,
};
pub use vae::{Posterior, Vae, VaeDecoder, VaeEncoder};

/// Re-exported so callers can build tensors and pick dtypes without naming candle themselves.
pub use candle_core::{DType, Device, Tensor};
