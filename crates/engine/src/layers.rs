//! Linear and embedding layers whose weights may be kept in a narrower dtype than the input
//! (`half_weights.rs`): the weight is widened to the input's dtype as the layer runs, then the
//! layer is candle's. Built as `candle_nn`'s builders build theirs.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::half_weights::widened;

/// `y = x·Wᵀ + b`, as `candle_nn::Linear`.
#[derive(Clone, Debug)]
pub(crate) struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// A layer of `weight` (`[out, in]`) and `bias`.
    pub(crate) fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, bias }
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let weight = widened(&self.weight, xs.dtype())?;
        candle_nn::Linear::new(weight, self.bias.clone()).forward(xs)
    }
}

/// A linear layer with a bias, read (or, from a `VarMap`, initialised) by `candle_nn::linear`.
pub(crate) fn linear(inputs: usize, outputs: usize, vb: VarBuilder) -> Result<Linear> {
    let layer = candle_nn::linear(inputs, outputs, vb)?;
    Ok(Linear::new(layer.weight().clone(), layer.bias().cloned()))
}

/// A linear layer without a bias, read by `candle_nn::linear_no_bias`.
pub(crate) fn linear_no_bias(inputs: usize, outputs: usize, vb: VarBuilder) -> Result<Linear> {
    let layer = candle_nn::linear_no_bias(inputs, outputs, vb)?;
    Ok(Linear::new(layer.weight().clone(), None))
}

/// A lookup table of `[count, width]` embeddings, as `candle_nn::Embedding`; only the rows
/// looked up are widened.
#[derive(Clone, Debug)]
pub(crate) struct Embedding {
    table: Tensor,
}

impl Embedding {
    /// The rows of `ids` (any shape of integers), in `dtype`: `[..ids, width]`.
    pub(crate) fn lookup(&self, ids: &Tensor, dtype: candle_core::DType) -> Result<Tensor> {
        let rows =
            candle_nn::Embedding::new(self.table.clone(), self.table.dim(1)?).forward(ids)?;
        widened(&rows, dtype)
    }
}

/// An embedding table, read by `candle_nn::embedding`.
pub(crate) fn embedding(count: usize, width: usize, vb: VarBuilder) -> Result<Embedding> {
    let table = candle_nn::embedding(count, width, vb)?.embeddings().clone();
    Ok(Embedding { table })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| ((i as u64 * 2654435761 + seed) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn a_half_precision_linear_equals_the_widened_one() {
        let (w, b, x) = (random(&[5, 7], 1), random(&[5], 2), random(&[2, 3, 7], 3));
        let half = Linear::new(w.to_dtype(DType::F16).unwrap(), Some(b.clone()));
        let wide = w
            .to_dtype(DType::F16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let theirs = candle_nn::Linear::new(wide, Some(b)).forward(&x).unwrap();
        let ours = half.forward(&x).unwrap();
        assert_eq!(ours.dtype(), DType::F32);
        let diff = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-6, "{diff}");
    }

    #[test]
    fn an_embedding_widens_only_the_rows_looked_up() {
        let table = random(&[10, 4], 4);
        let half = Embedding {
            table: table.to_dtype(DType::F16).unwrap(),
        };
        let ids = Tensor::new(&[[3u32, 9, 0]], &Device::Cpu).unwrap();
        let ours = half.lookup(&ids, DType::F32).unwrap();
        assert_eq!(ours.dims(), [1, 3, 4]);
        let theirs = table
            .to_dtype(DType::F16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .index_select(&Tensor::new(&[3u32, 9, 0], &Device::Cpu).unwrap(), 0)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        assert_eq!(
            ours.to_vec3::<f32>().unwrap(),
            theirs.to_vec3::<f32>().unwrap()
        );
    }
}
