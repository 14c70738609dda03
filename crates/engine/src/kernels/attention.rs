//! Multi-head attention, softmax(q·kᵀ·scale)·v, on the layout the projections produce
//! (`[batch, tokens, heads·d]`, heads side by side), so no transposes are copied on the way in
//! or out.
//!
//! On the CPU each task takes one head and a block of queries, scales the block once (the scale
//! folded into q), and walks the keys in blocks with an online softmax: the running row maximum
//! and sum rescale what is accumulated so far, so no score matrix larger than a block ever
//! exists and the scores stay in cache. Elsewhere, and for other dtypes, candle's ops compute
//! the same in f32, a few heads at a time.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, D};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::{f32s, on_cpu_f32, vmath, SharedOut};

/// Queries per CPU task.
const QUERY_BLOCK: usize = 64;
/// Keys per online-softmax block (a block's scores take `QUERY_BLOCK·KEY_BLOCK·4` bytes).
const KEY_BLOCK: usize = 1024;
/// Largest score matrix the fallback computes at once, in bytes.
const SCORE_BUDGET: usize = 256 << 20;

/// Attention over `heads` heads: `q` is `[batch, queries, dim]`, `k` and `v` are
/// `[batch, keys, dim]`; the result has `q`'s shape and dtype.
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    scale: f64,
) -> Result<Tensor> {
    let (b, _, dim) = q.dims3()?;
    let (kb, keys, kdim) = k.dims3()?;
    if kb != b || kdim != dim || v.dims() != k.dims() || heads == 0 || dim % heads != 0 {
        candle_core::bail!(
            "attention: q {:?}, k {:?}, v {:?} do not fit {heads} heads",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    if keys == 0 {
        candle_core::bail!("attention over no keys");
    }
    if on_cpu_f32(q) && on_cpu_f32(k) && on_cpu_f32(v) {
        q.contiguous()?.apply_op3_no_bwd(
            &k.contiguous()?,
            &v.contiguous()?,
            &CpuAttention {
                heads,
                scale: scale as f32,
            },
        )
    } else {
        reference(q, k, v, heads, scale, SCORE_BUDGET)
    }
}

/// candle's composition: split the heads, then q (scaled first, as PyTorch's attention does)
/// times kᵀ and the probabilities times v in the tensors' own dtype — on a GPU in f16, with
/// nothing upcast — and the softmax in f32 (f16 scores would lose its small terms), as many
/// heads at a time as keep the scores within `budget` bytes.
fn reference(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    scale: f64,
    budget: usize,
) -> Result<Tensor> {
    let dtype = q.dtype();
    let (b, queries, dim) = q.dims3()?;
    let d = dim / heads;
    let split = |t: &Tensor| -> Result<Tensor> {
        let n = t.dim(1)?;
        t.reshape((b, n, heads, d))?
            .transpose(1, 2)?
            .reshape((b * heads, n, d))
    };
    let (q, k, v) = (split(q)?, split(k)?, split(v)?);
    let rows = b * heads;
    let per_row = queries * k.dim(1)? * 4;
    let chunk = (budget / per_row.max(1)).clamp(1, rows);
    let mut parts = Vec::with_capacity(rows.div_ceil(chunk));
    for start in (0..rows).step_by(chunk) {
        let len = chunk.min(rows - start);
        let q = (q.narrow(0, start, len)? * scale)?;
        let (k, v) = (k.narrow(0, start, len)?, v.narrow(0, start, len)?);
        let scores = q.matmul(&k.t()?)?.to_dtype(DType::F32)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?.to_dtype(dtype)?;
        parts.push(probs.matmul(&v)?);
    }
    Tensor::cat(&parts, 0)?
        .reshape((b, heads, queries, d))?
        .transpose(1, 2)?
        .reshape((b, queries, dim))
}

struct CpuAttention {
    heads: usize,
    scale: f32,
}

/// One task's working memory, reused across the tasks a thread runs.
#[derive(Default)]
struct Scratch {
    q: Vec<f32>,
    scores: Vec<f32>,
    acc: Vec<f32>,
    max: Vec<f32>,
    sum: Vec<f32>,
}

impl CustomOp3 for CpuAttention {
    fn name(&self) -> &'static str {
        "selfdiffusion-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            f32s(qs, ql, self.name())?,
            f32s(ks, kl, self.name())?,
            f32s(vs, vl, self.name())?,
        );
        let (b, queries, dim) = ql.shape().dims3()?;
        let keys = kl.shape().dims()[1];
        let heads = self.heads;
        let d = dim / heads;
        let mut out = vec![0f32; b * queries * dim];
        let shared = SharedOut(out.as_mut_ptr());
        let blocks = queries.div_ceil(QUERY_BLOCK);
        (0..b * heads * blocks)
            .into_par_iter()
            .for_each_init(Scratch::default, |s, task| {
                let (bh, block) = (task / blocks, task % blocks);
                let (batch, head) = (bh / heads, bh % heads);
                let q0 = block * QUERY_BLOCK;
                let rows = QUERY_BLOCK.min(queries - q0);
                let col = head * d;
                // The scaled query block, contiguous.
                s.q.clear();
                for r in 0..rows {
                    let start = (batch * queries + q0 + r) * dim + col;
                    s.q.extend(q[start..start + d].iter().map(|x| x * self.scale));
                }
                s.acc.clear();
                s.acc.resize(rows * d, 0.0);
                s.max.clear();
                s.max.resize(rows, f32::NEG_INFINITY);
                s.sum.clear();
                s.sum.resize(rows, 0.0);
                let kv_base = batch * keys * dim + col;
                for k0 in (0..keys).step_by(KEY_BLOCK) {
                    let n = KEY_BLOCK.min(keys - k0);
                    s.scores.resize(rows * n, 0.0);
                    // SAFETY: the strides below stay inside `s.q` ([rows, d]), the key block
                    // ([n, d] rows of `k`, `dim` apart) and `s.scores` ([rows, n]).
                    unsafe {
                        gemm(
                            rows,
                            n,
                            d,
                            s.scores.as_mut_ptr(),
                            1,
                            n as isize,
                            false,
                            s.q.as_ptr(),
                            1,
                            d as isize,
                            k.as_ptr().add(kv_base + k0 * dim),
                            dim as isize,
                            1,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            Parallelism::None,
                        );
                    }
                    for r in 0..rows {
                        let row = &mut s.scores[r * n..(r + 1) * n];
                        let block_max = vmath::max(row);
                        let new_max = s.max[r].max(block_max);
                        let block_sum = vmath::exp_shifted_sum(row, new_max);
                        if s.max[r] > f32::NEG_INFINITY {
                            let mut keep = [s.max[r] - new_max];
                            vmath::exp_in_place(&mut keep);
                            s.sum[r] *= keep[0];
                            for a in &mut s.acc[r * d..(r + 1) * d] {
                                *a *= keep[0];
                            }
                        }
                        s.sum[r] += block_sum;
                        s.max[r] = new_max;
                    }
                    // SAFETY: probabilities [rows, n], the value block ([n, d] rows of `v`,
                    // `dim` apart) and the accumulator [rows, d].
                    unsafe {
                        gemm(
                            rows,
                            d,
                            n,
                            s.acc.as_mut_ptr(),
                            1,
                            d as isize,
                            true,
                            s.scores.as_ptr(),
                            1,
                            n as isize,
                            v.as_ptr().add(kv_base + k0 * dim),
                            1,
                            dim as isize,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            Parallelism::None,
                        );
                    }
                }
                for r in 0..rows {
                    let inv = 1.0 / s.sum[r];
                    let start = (batch * queries + q0 + r) * dim + col;
                    for (e, a) in s.acc[r * d..(r + 1) * d].iter().enumerate() {
                        // SAFETY: this task owns rows q0..q0+rows of this head's columns.
                        unsafe { *shared.ptr().add(start + e) = a * inv };
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from_dims(&[b, queries, dim])))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{random, rel_diff};
    use super::*;

    #[test]
    fn matches_candle_on_self_and_cross_attention() {
        // Queries not a multiple of the block, keys over several blocks (online softmax), and
        // a short cross-attention context.
        for (queries, keys, heads, d) in [(200, 2500, 3, 8), (130, 77, 2, 16), (1, 1, 1, 4)] {
            let dim = heads * d;
            let q = random(&[2, queries, dim], 1, 2.0);
            let k = random(&[2, keys, dim], 2, 2.0);
            let v = random(&[2, keys, dim], 3, 1.0);
            let scale = (d as f64).powf(-0.5);
            let ours = attention(&q, &k, &v, heads, scale).unwrap();
            let theirs = reference(&q, &k, &v, heads, scale, SCORE_BUDGET).unwrap();
            let diff = rel_diff(&ours, &theirs);
            assert!(diff <= 1e-5, "{queries}×{keys}, {heads} heads: {diff}");
        }
    }

    #[test]
    fn the_reference_in_chunks_equals_the_reference_at_once() {
        let q = random(&[2, 10, 12], 1, 1.0);
        let k = random(&[2, 7, 12], 2, 1.0);
        let v = random(&[2, 7, 12], 3, 1.0);
        let whole = reference(&q, &k, &v, 3, 0.5, usize::MAX).unwrap();
        for budget in [1, 10 * 7 * 4, 10 * 7 * 4 * 4] {
            let parts = reference(&q, &k, &v, 3, 0.5, budget).unwrap();
            assert_eq!(rel_diff(&parts, &whole), 0.0, "budget {budget}");
        }
    }

    #[test]
    fn large_scores_do_not_overflow() {
        // Scores in the hundreds: a softmax without the running maximum would overflow exp.
        let q = random(&[1, 70, 8], 4, 30.0);
        let k = random(&[1, 1500, 8], 5, 30.0);
        let v = random(&[1, 1500, 8], 6, 1.0);
        let ours = attention(&q, &k, &v, 1, 1.0).unwrap();
        let theirs = reference(&q, &k, &v, 1, 1.0, SCORE_BUDGET).unwrap();
        assert!(rel_diff(&ours, &theirs) <= 1e-5);
    }

    /// In f16 (a GPU's dtype; here on the CPU through the same composition) q, k and v stay
    /// f16 and only the softmax runs in f32: within f16 rounding of the f32 kernel.
    #[test]
    fn half_precision_attention_stays_within_f16_rounding() {
        let (q, k, v) = (
            random(&[2, 300, 24], 1, 2.0),
            random(&[2, 1100, 24], 2, 2.0),
            random(&[2, 1100, 24], 3, 1.0),
        );
        let scale = 8f64.powf(-0.5);
        let exact = attention(&q, &k, &v, 3, scale).unwrap();
        let half = |t: &Tensor| t.to_dtype(DType::F16).unwrap();
        let ours = attention(&half(&q), &half(&k), &half(&v), 3, scale).unwrap();
        assert_eq!(ours.dtype(), DType::F16);
        let diff = rel_diff(&ours.to_dtype(DType::F32).unwrap(), &exact);
        assert!(diff <= 5e-3, "{diff}");
    }

    #[test]
    fn mismatched_shapes_are_refused() {
        let q = random(&[1, 4, 8], 1, 1.0);
        let k = random(&[1, 5, 6], 2, 1.0);
        assert!(attention(&q, &k, &k, 2, 1.0).is_err());
        assert!(attention(&q, &q, &q, 3, 1.0).is_err());
    }
}
