//! The engine as the app and CLI hold it: one device, one cached model, and a worker boundary
//! where a panic becomes an error.

use std::panic::{catch_unwind, AssertUnwindSafe};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use candle_core::{DType, Device};

use crate::base_weights::BaseWeights;
use crate::error::{EngineError, Result};
use crate::half_weights::Precision;
use crate::model::{ModelSpec, StableDiffusion};
use crate::pipeline::{Control, Generation, ImageSink, Phase, Progress, Request};

/// Runs requests on one device, keeping the last model loaded.
pub struct Engine {
    device: Device,
    precision: Precision,
    low_memory: bool,
    loaded: Mutex<Option<Loaded>>,
}

/// The environment variable that turns low-memory runs on (`1`, `true`).
pub const LOW_MEMORY_ENV: &str = "SELFDIFFUSION_LOW_MEMORY";

/// Whether [`LOW_MEMORY_ENV`] asks for low-memory runs.
pub fn low_memory_requested() -> bool {
    env_flag(LOW_MEMORY_ENV)
}

/// The environment variable that keeps weight matrices in half precision under f32 compute
/// (`1`, `true`).
pub const HALF_WEIGHTS_ENV: &str = "SELFDIFFUSION_HALF_WEIGHTS";

/// Whether [`HALF_WEIGHTS_ENV`] asks for weights kept in half precision.
pub fn half_weights_requested() -> bool {
    env_flag(HALF_WEIGHTS_ENV)
}

/// Whether the environment variable `name` is set to `1`, `true` or `yes`.
fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

/// The cached model, and its base weights for a change of LoRAs.
struct Loaded {
    spec: ModelSpec,
    model: Arc<StableDiffusion>,
    base: Arc<BaseWeights>,
}

impl Engine {
    /// An engine on `device` computing in `dtype`, with weights in `dtype` too.
    pub fn new(device: Device, dtype: DType) -> Self {
        Engine {
            device,
            precision: Precision::from(dtype),
            low_memory: false,
            loaded: Mutex::new(None),
        }
    }

    /// Low-memory runs: the text encoders are freed once a request's prompts are encoded (and
    /// read again for the next), and no base weights are kept for a change of LoRAs (it reads
    /// them from disk), so the denoising holds only the UNet and the VAE.
    pub fn with_low_memory(mut self, low_memory: bool) -> Self {
        self.low_memory = low_memory;
        self
    }

    /// Keeps the weight matrices in f16 while computing in f32, halving the memory the model
    /// holds for a little more time per step (see [`Precision`]); nothing changes when the
    /// engine already computes in half precision.
    pub fn with_half_weights(mut self, half_weights: bool) -> Self {
        self.precision = Precision::new(self.precision.compute, half_weights);
        self
    }

    /// The model `spec` names, loading it (and dropping the previous one) if it is not the
    /// cached one. The same model with other LoRAs is rebuilt from the weights kept in memory,
    /// not read from disk again.
    pub fn model(
        &self,
        spec: &ModelSpec,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Arc<StableDiffusion>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cached) = loaded.as_ref() {
            if cached.spec == *spec {
                return Ok(cached.model.clone());
            }
        }
        // Free the old model before loading the new one, so both never sit in memory together;
        // only its base weights stay when the new one is the same model with other LoRAs.
        let base = match loaded.take() {
            Some(cached) if cached.spec.same_base(spec) => Some(cached.base),
            _ => None,
        };
        progress(&Progress {
            phase: Phase::LoadingModel,
            image: 0,
            images: 0,
            step: 0,
            steps: 0,
            elapsed: Duration::ZERO,
            eta: None,
            preview: None,
        });
        let (model, base) = match base {
            _ if self.low_memory => (
                spec.load(&self.device, self.precision)?,
                Arc::new(BaseWeights::default()),
            ),
            Some(base) => (
                spec.load_replaying(&base, &self.device, self.precision)?,
                base,
            ),
            None => {
                let base = Arc::new(BaseWeights::default());
                (
                    spec.load_recording(&base, &self.device, self.precision)?,
                    base,
                )
            }
        };
        model.set_free_text_after_encoding(self.low_memory);
        let model = Arc::new(model);
        *loaded = Some(Loaded {
            spec: spec.clone(),
            model: model.clone(),
            base,
        });
        Ok(model)
    }

    /// Whether `spec` is the cached model.
    pub fn is_loaded(&self, spec: &ModelSpec) -> bool {
        let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded.as_ref().is_some_and(|cached| cached.spec == *spec)
    }

    /// Loads (or reuses) the model `spec` names and runs `request`, handing each finished image to
    /// `on_image`. A panic anywhere inside becomes [`EngineError::Panicked`]; the engine stays
    /// usable.
    pub fn generate(
        &self,
        spec: &ModelSpec,
        request: &Request,
        control: &Control,
        progress: &mut dyn FnMut(&Progress),
        on_image: &mut ImageSink<'_>,
    ) -> Result<Generation> {
        catch_unwind(AssertUnwindSafe(|| {
            let model = self.model(spec, &mut |p| {
                progress(&Progress {
                    images: request.count,
                    steps: request.steps,
                    ..p.clone()
                })
            })?;
            model.generate(request, control, progress, on_image)
        }))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(%message, "the engine panicked");
            Err(EngineError::Panicked(message))
        })
    }
}
