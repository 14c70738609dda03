//! The base model's weights as they were first read (before any LoRA is merged), kept beside the
//! loaded model so a change of LoRAs rebuilds it from memory instead of reading the weights from
//! disk again. The kept tensors are the ones the model's layers hold, so keeping them costs
//! nothing until a LoRA replaces a layer's weight.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

type Tensors = Arc<Mutex<HashMap<String, Tensor>>>;

/// Every weight tensor of one loaded model, by component and name.
#[derive(Default)]
pub struct BaseWeights {
    components: Mutex<HashMap<String, Tensors>>,
    files: Mutex<HashMap<String, PathBuf>>,
}

impl BaseWeights {
    fn tensors(&self, component: &str) -> Tensors {
        self.components
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(component.to_owned())
            .or_default()
            .clone()
    }

    /// `base`, keeping every tensor it serves for `component` (read from `file`).
    pub(crate) fn record(
        &self,
        component: &str,
        file: &Path,
        base: Box<dyn SimpleBackend>,
    ) -> Box<dyn SimpleBackend> {
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(component.to_owned(), file.to_path_buf());
        Box::new(Recorder {
            base,
            kept: self.tensors(component),
        })
    }

    /// The kept tensors of `component`, and the file they came from (for errors); `None` when
    /// nothing was kept for it.
    pub(crate) fn replay(&self, component: &str) -> Option<(Box<dyn SimpleBackend>, PathBuf)> {
        let file = self
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(component)
            .cloned()?;
        let tensors = self
            .tensors(component)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Some((Box::new(tensors), file))
    }
}

/// A backend that keeps what it serves.
struct Recorder {
    base: Box<dyn SimpleBackend>,
    kept: Tensors,
}

impl Recorder {
    fn keep(&self, name: &str, tensor: &Tensor) {
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), tensor.clone());
    }
}

impl SimpleBackend for Recorder {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.base.get(shape, name, init, dtype, dev)?;
        self.keep(name, &tensor);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let tensor = self.base.get_unchecked(name, dtype, dev)?;
        self.keep(name, &tensor);
        Ok(tensor)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.base.contains_tensor(name)
    }
}
