//! Linear and embedding layers whose weights may be kept in a narrower dtype than the input
//! (`half_weights.rs`): the weight is widened to the input's dtype as the layer runs. Built as
//! `candle_nn`'s builders build theirs.

use candle_core::{CpuStorage, DType, Device, Module, Result, Storage, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use crate::half_weights::widened;

/// `y = x·Wᵀ + b`, as `candle_nn::Linear` computes it on a contiguous input (candle's layer
/// gets a transposed view's batches wrong, so every input is made contiguous first).
#[derive(Clone, Debug)]
pub(crate) struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

/// Inputs of at most this many rows (all leading dimensions together: the text encoders' 2×77
/// tokens, the cross-attention's keys and values) multiply on the CPU as `(W·xᵀ)ᵀ`: the matrix
/// product reads the weight row by row and the few rows of `x` stay in cache, up to twice as
/// fast as `x·Wᵀ` at these shapes (the 3072-wide CLIP feed-forward); from 512 rows on, `x·Wᵀ` is
/// as fast or faster.
const FEW_ROWS: usize = 256;

impl Linear {
    /// A layer of `weight` (`[out, in]`) and `bias`.
    pub(crate) fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, bias }
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let weight = widened(&self.weight, xs.dtype())?;
        let xs = xs.contiguous()?;
        let (outputs, inputs) = weight.dims2()?;
        let rows = xs.elem_count() / inputs.max(1);
        if !(xs.device().is_cpu() && xs.dtype() == DType::F32 && rows <= FEW_ROWS) {
            return candle_nn::Linear::new(weight, self.bias.clone()).forward(&xs);
        }
        let product = weight.matmul(&xs.reshape((rows, inputs))?.t()?)?;
        let mut shape = xs.dims().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = outputs;
        }
        let ys = transposed(&product)?.reshape(shape)?;
        match &self.bias {
            Some(bias) => ys.broadcast_add(bias),
            None => Ok(ys),
        }
    }
}

/// The matrix `[rows, cols]` as `[cols, rows]`, contiguous: an f32 one on the CPU in strips
/// across the threads (candle's strided copy is several times slower), any other with candle's
/// copy.
fn transposed(matrix: &Tensor) -> Result<Tensor> {
    let (rows, cols) = matrix.dims2()?;
    let matrix = matrix.contiguous()?;
    let (storage, layout) = matrix.storage_and_layout();
    if let (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) =
        (&*storage, layout.contiguous_offsets())
    {
        let values = transpose(&data[start..end], rows, cols);
        return Tensor::from_vec(values, (cols, rows), &Device::Cpu);
    }
    drop(storage);
    matrix.t()?.contiguous()
}

/// The row-major `[rows, cols]` matrix `values` as row-major `[cols, rows]`.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    /// Input columns (output rows) per task: a 64-wide strip of one input row is one read, and
    /// its 64 writes land in output rows the task keeps in cache.
    const STRIP: usize = 64;
    let mut out = vec![0f32; values.len()];
    out.par_chunks_mut(STRIP * rows.max(1))
        .enumerate()
        .for_each(|(block, chunk)| {
            let col0 = block * STRIP;
            let width = chunk.len() / rows.max(1);
            for row in 0..rows {
                let src = &values[row * cols + col0..row * cols + col0 + width];
                for (c, &v) in src.iter().enumerate() {
                    chunk[c * rows + row] = v;
                }
            }
        });
    out
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

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| ((i as u64 * 2654435761 + seed) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
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
        let diff = max_difference(&ours, &theirs);
        assert!(diff < 1e-6, "{diff}");
    }

    #[test]
    fn the_transpose_equals_candles() {
        for (rows, cols) in [(1, 1), (3, 200), (130, 70), (64, 64), (65, 129)] {
            let w = random(&[rows, cols], (rows * cols) as u64);
            let theirs = w.t().unwrap().contiguous().unwrap();
            let ours = transposed(&w).unwrap();
            assert_eq!(ours.dims(), [cols, rows]);
            assert_eq!(
                ours.to_vec2::<f32>().unwrap(),
                theirs.to_vec2::<f32>().unwrap()
            );
        }
    }

    #[test]
    fn a_linear_equals_candles_for_every_rank_and_a_strided_input() {
        let (w, b) = (random(&[5, 7], 5), random(&[5], 6));
        let ours = Linear::new(w.clone(), Some(b.clone()));
        let theirs = candle_nn::Linear::new(w.clone(), Some(b));
        let no_bias = Linear::new(w.clone(), None);
        let strided = random(&[2, 7, 3], 10).transpose(1, 2).unwrap();
        for x in [
            random(&[4, 7], 7),
            random(&[2, FEW_ROWS, 7], 11),
            random(&[2, 3, 7], 8),
            random(&[2, 2, 3, 7], 9),
            strided,
        ] {
            // candle's layer is the reference on a contiguous copy (on a transposed view its
            // batched product is wrong).
            let reference = theirs.forward(&x.contiguous().unwrap()).unwrap();
            let (a, b) = (ours.forward(&x).unwrap(), reference);
            assert_eq!(a.dims(), b.dims());
            let diff = max_difference(&a, &b);
            assert!(diff < 1e-5, "{diff}");
            let plain = no_bias.forward(&x).unwrap();
            let reference = x
                .contiguous()
                .unwrap()
                .broadcast_matmul(&w.t().unwrap())
                .unwrap();
            let diff = max_difference(&plain, &reference);
            assert!(diff < 1e-5, "{diff}");
        }
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
