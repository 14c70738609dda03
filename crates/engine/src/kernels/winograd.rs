//! 3×3, stride-1, padding-1 convolution by Winograd's F(2×2, 3×3): each 2×2 block of outputs
//! comes from a 4×4 block of inputs with 16 multiplications per channel pair instead of 36.
//! The weights are transformed (U = G·g·Gᵀ) once per call, which costs what packing them for a
//! matrix product would; then each task takes a band of tiles, transforms its inputs
//! (V = Bᵀ·d·B), runs 16 matrix products (one per position ξ of the 4×4 transform:
//! M_ξ = U_ξ · V_ξ over the input channels) and transforms the products back (Y = Aᵀ·M·A),
//! adding the bias and writing each 2×2 block into its place in NCHW. The input transform works
//! on a few tiles at a time and writes each ξ's values for them as one run, so V is written in
//! whole cache lines and the products read contiguous rows.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::conv::Dims;
use super::{threads, SharedOut};

/// Tiles (2×2 output blocks) per task.
const TILES_PER_TASK: usize = 256;
/// Tiles the input transform handles at once (16 floats: a cache line per ξ).
const GROUP: usize = 16;

/// U = G·g·Gᵀ for every (output, input) channel pair of `w` (`[cout, cin, 3, 3]`), laid out as
/// 16 matrices `[cout, cin]`, one per position of the 4×4 transform.
fn transform_weights(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let mut u = vec![0f32; 16 * cout * cin];
    let shared = SharedOut(u.as_mut_ptr());
    let plane = cout * cin;
    (0..cout).into_par_iter().for_each(|co| {
        for ci in 0..cin {
            let g = &w[(co * cin + ci) * 9..(co * cin + ci) * 9 + 9];
            // G·g: 4 rows of 3.
            let mut gg = [[0f32; 3]; 4];
            for c in 0..3 {
                let (g0, g1, g2) = (g[c], g[3 + c], g[6 + c]);
                gg[0][c] = g0;
                gg[1][c] = 0.5 * (g0 + g1 + g2);
                gg[2][c] = 0.5 * (g0 - g1 + g2);
                gg[3][c] = g2;
            }
            for (r, row) in gg.iter().enumerate() {
                let (g0, g1, g2) = (row[0], row[1], row[2]);
                let out = [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2];
                for (c, v) in out.into_iter().enumerate() {
                    // SAFETY: position (r, c) of pair (co, ci); each task owns its `co` rows.
                    unsafe { *shared.ptr().add((r * 4 + c) * plane + co * cin + ci) = v };
                }
            }
        }
    });
    u
}

/// Bᵀ·x·B's one dimension: x = (x0, x1, x2, x3) ↦ (x0 − x2, x1 + x2, x2 − x1, x1 − x3).
#[inline(always)]
fn input_1d(x: [f32; 4]) -> [f32; 4] {
    [x[0] - x[2], x[1] + x[2], x[2] - x[1], x[1] - x[3]]
}

/// Aᵀ·m·A's one dimension: m ↦ (m0 + m1 + m2, m1 − m2 − m3).
#[inline(always)]
fn output_1d(m: [f32; 4]) -> [f32; 2] {
    [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]
}

/// Convolves `x` (`[batch, cin, ih, iw]`) with `w` (`[cout, cin, 3, 3]`, stride 1, padding 1)
/// into a new `[batch, cout, ih, iw]` buffer.
pub(super) fn conv3x3(x: &[f32], w: &[f32], bias: Option<&[f32]>, d: Dims) -> Vec<f32> {
    let (cin, cout, h, wd) = (d.cin, d.cout, d.ih, d.iw);
    let u = transform_weights(w, cout, cin);
    let (th, tw) = (h.div_ceil(2), wd.div_ceil(2));
    let rows_per_task = (TILES_PER_TASK / tw).clamp(1, th);
    let bands = th.div_ceil(rows_per_task);
    let tasks = d.batch * bands;
    let mut out = vec![0f32; d.batch * cout * h * wd];
    let shared = SharedOut(out.as_mut_ptr());
    let parallel_tasks = tasks >= 2 * threads();
    let inner = if parallel_tasks || threads() == 1 {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads())
    };
    let band = |(v, m, pad): &mut (Vec<f32>, Vec<f32>, Vec<f32>), task: usize| {
        let (image, b) = (task / bands, task % bands);
        let ty0 = b * rows_per_task;
        let rows = rows_per_task.min(th - ty0);
        let n = rows * tw;
        let input = &x[image * cin * h * wd..(image + 1) * cin * h * wd];
        // V: 16 row-major matrices [cin, n]. Each channel's band of input rows is copied into
        // `pad` with its zero border, so the transform reads without bounds checks.
        let pw = wd + 3;
        let pad_rows = 2 * rows + 2;
        // Grown, never cleared: every element a task reads it first writes.
        if v.len() < 16 * cin * n {
            v.resize(16 * cin * n, 0.0);
        }
        pad.clear();
        pad.resize(pad_rows * pw, 0.0);
        for c in 0..cin {
            let plane = &input[c * h * wd..(c + 1) * h * wd];
            for pr in 0..pad_rows {
                // Padded row pr is input row 2·ty0 − 1 + pr.
                let line = &mut pad[pr * pw..(pr + 1) * pw];
                match (2 * ty0 + pr).checked_sub(1).filter(|&y| y < h) {
                    Some(y) => line[1..=wd].copy_from_slice(&plane[y * wd..(y + 1) * wd]),
                    None => line[1..=wd].fill(0.0),
                }
            }
            // Tiles are transformed GROUP at a time into `local`, then written out as 16
            // runs of GROUP consecutive values, one per ξ.
            let mut local = [[0f32; 16]; GROUP];
            for first in (0..n).step_by(GROUP) {
                let count = GROUP.min(n - first);
                for (k, values) in local.iter_mut().take(count).enumerate() {
                    let (r, t) = ((first + k) / tw, (first + k) % tw);
                    let block = &pad[2 * r * pw..(2 * r + 4) * pw];
                    let x = 2 * t;
                    let mut cols = [[0f32; 4]; 4];
                    for (i, col) in cols.iter_mut().enumerate() {
                        let at = |row: usize| block[row * pw + x + i];
                        *col = input_1d([at(0), at(1), at(2), at(3)]);
                    }
                    for row in 0..4 {
                        let out =
                            input_1d([cols[0][row], cols[1][row], cols[2][row], cols[3][row]]);
                        values[row * 4..row * 4 + 4].copy_from_slice(&out);
                    }
                }
                for xi in 0..16 {
                    let at = (xi * cin + c) * n + first;
                    for (dst, values) in v[at..at + count].iter_mut().zip(&local) {
                        *dst = values[xi];
                    }
                }
            }
        }
        // M_ξ = U_ξ · V_ξ: 16 row-major matrices [cout, n].
        if m.len() < 16 * cout * n {
            m.resize(16 * cout * n, 0.0);
        }
        for xi in 0..16 {
            // SAFETY: U_ξ, V_ξ and M_ξ are row-major [cout, cin], [cin, n] and [cout, n]
            // inside their buffers.
            unsafe {
                gemm(
                    cout,
                    n,
                    cin,
                    m.as_mut_ptr().add(xi * cout * n),
                    1,
                    n as isize,
                    false,
                    u.as_ptr().add(xi * cout * cin),
                    1,
                    cin as isize,
                    v.as_ptr().add(xi * cin * n),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    inner,
                );
            }
        }
        // Y = Aᵀ·M·A per tile and channel, plus the bias, into the output.
        for co in 0..cout {
            let b = bias.map_or(0.0, |b| b[co]);
            let base = (image * cout + co) * h * wd;
            for r in 0..rows {
                for t in 0..tw {
                    let tile = r * tw + t;
                    let mv = |xi: usize| m[(xi * cout + co) * n + tile];
                    let mut half = [[0f32; 2]; 4];
                    for (row, h2) in half.iter_mut().enumerate() {
                        *h2 = output_1d([
                            mv(row * 4),
                            mv(row * 4 + 1),
                            mv(row * 4 + 2),
                            mv(row * 4 + 3),
                        ]);
                    }
                    for dx in 0..2 {
                        let col = output_1d(half.map(|pair| pair[dx]));
                        for (dy, value) in col.into_iter().enumerate() {
                            let (oy, ox) = (2 * (ty0 + r) + dy, 2 * t + dx);
                            if oy < h && ox < wd {
                                // SAFETY: this task owns output rows of its band.
                                unsafe { *shared.ptr().add(base + oy * wd + ox) = value + b };
                            }
                        }
                    }
                }
            }
        }
    };
    if parallel_tasks {
        (0..tasks).into_par_iter().for_each_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |bufs, task| band(bufs, task),
        );
    } else {
        let mut bufs = (Vec::new(), Vec::new(), Vec::new());
        (0..tasks).for_each(|task| band(&mut bufs, task));
    }
    out
}
