//! The GEGLU gate of the transformer feed-forward: the projection's `[…, 2·inner]` output is
//! split into a value half and a gate half, and the result is value · GELU(gate) with the exact
//! (erf) GELU, as diffusers computes it. On the CPU (f32) one parallel, vectorised pass reads
//! both halves and writes the `[…, inner]` result, where candle would copy the strided gate
//! half, run a scalar single-threaded erf over it, then multiply.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::{f32s, on_cpu_f32, vmath};

/// value · GELU(gate) where `h`'s last dimension is `[value, gate]`.
pub(crate) fn geglu(h: &Tensor) -> Result<Tensor> {
    let width = h.dim(D::Minus1)?;
    if width % 2 != 0 {
        candle_core::bail!("geglu: odd last dimension {width}");
    }
    if on_cpu_f32(h) {
        h.contiguous()?.apply_op1_no_bwd(&CpuGeglu)
    } else {
        reference(h)
    }
}

/// candle's composition.
fn reference(h: &Tensor) -> Result<Tensor> {
    let halves = h.chunk(2, D::Minus1)?;
    &halves[0] * halves[1].gelu_erf()?
}

struct CpuGeglu;

impl CustomOp1 for CpuGeglu {
    fn name(&self) -> &'static str {
        "selfdiffusion-geglu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let h = f32s(storage, layout, self.name())?;
        let mut dims = layout.shape().dims().to_vec();
        let width = *dims.last().unwrap_or(&0);
        let inner = width / 2;
        let mut out = vec![0f32; h.len() / 2];
        if let Some(rows_per_task) = 4096usize.checked_div(inner) {
            // Several rows per task, so short rows do not drown in scheduling.
            let rows_per_task = rows_per_task.max(1);
            out.par_chunks_mut(inner * rows_per_task)
                .zip(h.par_chunks(width * rows_per_task))
                .for_each(|(out, h)| {
                    for (o, row) in out.chunks_exact_mut(inner).zip(h.chunks_exact(width)) {
                        let (value, gate) = row.split_at(inner);
                        vmath::geglu_into(gate, value, o);
                    }
                });
        }
        if let Some(last) = dims.last_mut() {
            *last = inner;
        }
        Ok((CpuStorage::F32(out), Shape::from_dims(&dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{random, rel_diff};
    use super::*;

    #[test]
    fn matches_candle() {
        for shape in [[2, 37, 24], [1, 1, 2], [3, 300, 80]] {
            let h = random(&shape, 15, 4.0);
            let diff = rel_diff(&geglu(&h).unwrap(), &reference(&h).unwrap());
            assert!(diff <= 1e-5, "{shape:?}: {diff}");
        }
    }

    #[test]
    fn an_odd_width_is_refused() {
        assert!(geglu(&random(&[1, 2, 3], 1, 1.0)).is_err());
    }
}
