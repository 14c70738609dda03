//! The engine as the app and CLI hold it: one device, one cached model, and a worker boundary
//! where a panic becomes an error.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use candle_core::{DType, Device};

use crate::error::{EngineError, Result};
use crate::model::StableDiffusion;
use crate::pipeline::{Control, Generation, ImageSink, Phase, Progress, Request};

/// Runs requests on one device, keeping the last model loaded.
pub struct Engine {
    device: Device,
    dtype: DType,
    loaded: Mutex<Option<(PathBuf, Arc<StableDiffusion>)>>,
}

impl Engine {
    /// An engine on `device` with weights in `dtype`.
    pub fn new(device: Device, dtype: DType) -> Self {
        Engine {
            device,
            dtype,
            loaded: Mutex::new(None),
        }
    }

    /// The model at `dir`, loading it (and dropping the previous one) if it is not the cached one.
    pub fn model(
        &self,
        dir: &Path,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Arc<StableDiffusion>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((path, model)) = loaded.as_ref() {
            if path == dir {
                return Ok(model.clone());
            }
        }
        // Free the old model before loading the new one, so both never sit in memory together.
        *loaded = None;
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
        let model = Arc::new(StableDiffusion::load(dir, &self.device, self.dtype)?);
        *loaded = Some((dir.to_path_buf(), model.clone()));
        Ok(model)
    }

    /// Whether the model at `dir` is the cached one.
    pub fn is_loaded(&self, dir: &Path) -> bool {
        let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded.as_ref().is_some_and(|(p, _)| p == dir)
    }

    /// Loads (or reuses) the model at `dir` and runs `request`, handing each finished image to
    /// `on_image`. A panic anywhere inside becomes [`EngineError::Panicked`]; the engine stays
    /// usable.
    pub fn generate(
        &self,
        dir: &Path,
        request: &Request,
        control: &Control,
        progress: &mut dyn FnMut(&Progress),
        on_image: &mut ImageSink<'_>,
    ) -> Result<Generation> {
        catch_unwind(AssertUnwindSafe(|| {
            let model = self.model(dir, &mut |p| {
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
