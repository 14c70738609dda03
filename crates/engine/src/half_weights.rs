//! Weights kept in half precision while the model computes in f32, which halves the memory a
//! model holds on the CPU (SD 1.5: 4.1 → 2.1 GB; SDXL: 10.3 → 5.2 GB) for a few percent more
//! time per step. `HalfWeights` hands out every matrix (the weights of the linear,
//! convolution and embedding layers) as f16 and everything else (norms, biases) in the compute
//! dtype; the layers in `layers.rs` and the convolution kernel widen a matrix to the input's
//! dtype as they use it, one layer at a time. A file stored in f32 is rounded to f16 as it
//! loads, as diffusers' `torch_dtype=torch.float16` does.

use candle_core::{CpuStorage, DType, Device, Shape, Storage, Tensor};
use candle_nn::var_builder::SimpleBackend;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

/// The precision a model computes in and the one its weight matrices are kept in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Precision {
    /// What activations are computed in.
    pub compute: DType,
    /// What the weight matrices are kept in between uses.
    pub weights: DType,
}

impl Precision {
    /// Computes in `compute`, keeping weight matrices in f16 when `half_weights` and `compute`
    /// is wider than that (on a GPU computing in f16 it changes nothing).
    pub fn new(compute: DType, half_weights: bool) -> Self {
        let weights = if half_weights && compute == DType::F32 {
            DType::F16
        } else {
            compute
        };
        Precision { compute, weights }
    }

    /// The VAE's precision when it computes in `vae_dtype` (SDXL's `force_upcast` VAE computes
    /// in f32 under an f16 model, and then keeps its weights in f32 too).
    pub(crate) fn for_vae(self, vae_dtype: DType) -> Self {
        if vae_dtype == self.compute {
            self
        } else {
            Precision::from(vae_dtype)
        }
    }
}

impl From<DType> for Precision {
    fn from(dtype: DType) -> Self {
        Precision {
            compute: dtype,
            weights: dtype,
        }
    }
}

/// Whether tensor `name` of `rank` dimensions is a weight matrix (of a linear, convolution or
/// embedding layer), which `HalfWeights` keeps in half precision.
fn is_matrix(name: &str, rank: usize) -> bool {
    rank >= 2 && name.ends_with("weight")
}

/// A backend that gives weight matrices in `weights` and everything else in the dtype asked for.
pub(crate) struct HalfWeights {
    inner: Box<dyn SimpleBackend>,
    weights: DType,
}

impl HalfWeights {
    /// `inner` with its matrices kept as `precision` says; `inner` itself when there is nothing
    /// to change.
    pub(crate) fn wrap(
        inner: Box<dyn SimpleBackend>,
        precision: Precision,
    ) -> Box<dyn SimpleBackend> {
        if precision.weights == precision.compute {
            return inner;
        }
        Box::new(HalfWeights {
            inner,
            weights: precision.weights,
        })
    }
}

impl SimpleBackend for HalfWeights {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let dtype = if is_matrix(name, shape.rank()) {
            self.weights
        } else {
            dtype
        };
        self.inner.get(shape, name, init, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let tensor = self.inner.get_unchecked(name, dtype, dev)?;
        if is_matrix(name, tensor.rank()) {
            tensor.to_dtype(self.weights)
        } else {
            Ok(tensor)
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.contains_tensor(name)
    }
}

/// Values converted per parallel task when widening f16 to f32.
const CHUNK: usize = 1 << 16;

/// `weight` in `dtype`: itself when it already is, else a converted copy. f16 → f32 on the CPU
/// runs vectorised (F16C where the CPU has it) across the thread pool; other conversions are
/// candle's.
pub(crate) fn widened(weight: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    if weight.dtype() == dtype {
        return Ok(weight.clone());
    }
    if dtype != DType::F32 || weight.dtype() != DType::F16 || !weight.device().is_cpu() {
        return weight.to_dtype(dtype);
    }
    let weight = weight.contiguous()?;
    let (storage, layout) = weight.storage_and_layout();
    let Storage::Cpu(CpuStorage::F16(data)) = &*storage else {
        return weight.to_dtype(dtype);
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        return weight.to_dtype(dtype);
    };
    let halves = &data[start..end];
    let mut out = vec![0f32; halves.len()];
    out.par_chunks_mut(CHUNK)
        .zip(halves.par_chunks(CHUNK))
        .for_each(|(dst, src)| src.convert_to_f32_slice(dst));
    drop(storage);
    Tensor::from_vec(out, weight.shape(), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_equals_candles_conversion() {
        let values: Vec<f32> = (0..200_001)
            .map(|i| (i as f32 * 0.37).sin() * 50.0)
            .collect();
        let t = Tensor::from_vec(values, (3, 66_667, 1), &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap();
        let ours = widened(&t, DType::F32).unwrap();
        let theirs = t.to_dtype(DType::F32).unwrap();
        assert_eq!(ours.shape(), theirs.shape());
        assert_eq!(
            ours.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        // A transposed view is made contiguous first.
        let t2 = t.squeeze(2).unwrap().t().unwrap();
        let ours = widened(&t2, DType::F32).unwrap();
        let theirs = t2.to_dtype(DType::F32).unwrap();
        assert_eq!(
            ours.to_vec2::<f32>().unwrap(),
            theirs.to_vec2::<f32>().unwrap()
        );
    }

    #[test]
    fn only_matrices_are_kept_in_half_precision() {
        let precision = Precision::new(DType::F32, true);
        assert_eq!(precision.weights, DType::F16);
        assert_eq!(
            Precision::new(DType::F16, true),
            Precision::from(DType::F16)
        );
        assert_eq!(precision.for_vae(DType::F32), precision);
        assert!(is_matrix("down_blocks.0.resnets.0.conv1.weight", 4));
        assert!(is_matrix("text_model.embeddings.token_embedding.weight", 2));
        assert!(!is_matrix("down_blocks.0.resnets.0.norm1.weight", 1));
        assert!(!is_matrix("conv_in.bias", 1));
    }
}
