//! 3×3, stride-1, padding-1 convolution by Winograd's F(2×2, 3×3): each 2×2 block of outputs
//! comes from a 4×4 block of inputs with 16 multiplications per channel pair instead of 36.
//! The weights are transformed (U = G·g·Gᵀ) once per call, which costs what packing them for a
//! matrix product would; then each task takes a band of tiles, transforms its inputs
//! (V = Bᵀ·d·B), runs 16 matrix products (one per position ξ of the 4×4 transform:
//! M_ξ = U_ξ · V_ξ over the input channels) and transforms the products back (Y = Aᵀ·M·A),
//! adding the bias and writing each 2×2 block into its place in NCHW. Both transforms work on a
//! whole row of tiles at once, on the input rows split into even and odd columns, so every loop
//! runs over contiguous values (vectorised for the CPU, `dispatch!`) and each ξ's values for
//! the row are written as one run: V is written in whole cache lines and the products read
//! contiguous rows.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::conv::Dims;
use super::{threads, SharedOut};

/// Tiles (2×2 output blocks) per task.
const TILES_PER_TASK: usize = 256;

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

/// Bᵀ·d·B for one row of `tw` tiles of one channel. `rows` holds the tiles' 4 input rows, each
/// split into its even and odd columns (`[e0, o0, e1, o1, e2, o2, e3, o3]`, `tw + 1` values
/// each: padded column 2t is `e[t]`, 2t + 1 is `o[t]`); `t` is scratch for 8 such arrays. The
/// 16 values of tile t go to `v[ξ·stride + t]`.
#[inline(always)]
fn input_row_generic(rows: &[f32], t: &mut [f32], v: &mut [f32], stride: usize, tw: usize) {
    let half = tw + 1;
    let row = |i: usize| &rows[i * half..(i + 1) * half];
    // Along y: (d0 − d2, d1 + d2, d2 − d1, d1 − d3), on even and odd columns alike.
    for parity in 0..2 {
        let (d0, d1, d2, d3) = (
            row(parity),
            row(2 + parity),
            row(4 + parity),
            row(6 + parity),
        );
        let (t0, rest) = t.split_at_mut(2 * half);
        let (t1, rest) = rest.split_at_mut(2 * half);
        let (t2, t3) = rest.split_at_mut(2 * half);
        let at = parity * half..(parity + 1) * half;
        let (t0, t1, t2, t3) = (
            &mut t0[at.clone()],
            &mut t1[at.clone()],
            &mut t2[at.clone()],
            &mut t3[at],
        );
        for i in 0..half {
            t0[i] = d0[i] - d2[i];
            t1[i] = d1[i] + d2[i];
            t2[i] = d2[i] - d1[i];
            t3[i] = d1[i] - d3[i];
        }
    }
    // Along x, for each of the 4: tile t reads columns 2t..2t+3 = (e[t], o[t], e[t+1], o[t+1]).
    for k in 0..4 {
        let (e, o) = (
            &t[2 * k * half..(2 * k + 1) * half],
            &t[(2 * k + 1) * half..(2 * k + 2) * half],
        );
        let run = |j: usize| (4 * k + j) * stride..(4 * k + j) * stride + tw;
        let out = &mut v[run(0)];
        for i in 0..tw {
            out[i] = e[i] - e[i + 1];
        }
        let out = &mut v[run(1)];
        for i in 0..tw {
            out[i] = o[i] + e[i + 1];
        }
        let out = &mut v[run(2)];
        for i in 0..tw {
            out[i] = e[i + 1] - o[i];
        }
        let out = &mut v[run(3)];
        for i in 0..tw {
            out[i] = o[i] - o[i + 1];
        }
    }
}

/// Aᵀ·M·A for one row of `tw` tiles of one output channel: `m[ξ·stride + t]` is tile t's
/// product at ξ; `h` is scratch for 8 arrays of `tw`. Writes the tiles' two output rows, plus
/// `bias`, into `top` and `bottom` (`bottom` empty past the last row), each `width` long.
#[inline(always)]
fn output_row_generic(
    m: &[f32],
    stride: usize,
    h: &mut [f32],
    bias: f32,
    top: &mut [f32],
    bottom: &mut [f32],
    tw: usize,
) {
    // Along x: h[k][0] = m0 + m1 + m2, h[k][1] = m1 − m2 − m3 over row k's four values.
    for k in 0..4 {
        let mv = |j: usize| &m[(4 * k + j) * stride..(4 * k + j) * stride + tw];
        let (m0, m1, m2, m3) = (mv(0), mv(1), mv(2), mv(3));
        let (h0, h1) = h[2 * k * tw..(2 * k + 2) * tw].split_at_mut(tw);
        for i in 0..tw {
            h0[i] = m0[i] + m1[i] + m2[i];
            h1[i] = m1[i] - m2[i] - m3[i];
        }
    }
    // Along y, for each output column of the tiles (dx), into the two rows interleaved.
    let hv = |k: usize, dx: usize| &h[(2 * k + dx) * tw..(2 * k + dx + 1) * tw];
    let width = top.len();
    for dx in 0..2 {
        let (a, b, c, d) = (hv(0, dx), hv(1, dx), hv(2, dx), hv(3, dx));
        let columns = (width - dx).div_ceil(2).min(tw);
        for i in 0..columns {
            top[2 * i + dx] = a[i] + b[i] + c[i] + bias;
        }
        if !bottom.is_empty() {
            for i in 0..columns {
                bottom[2 * i + dx] = b[i] - c[i] - d[i] + bias;
            }
        }
    }
}

dispatch!(
    input_row,
    input_row_generic,
    (rows: &[f32], t: &mut [f32], v: &mut [f32], stride: usize, tw: usize)
);
dispatch!(
    output_row,
    output_row_generic,
    (
        m: &[f32],
        stride: usize,
        h: &mut [f32],
        bias: f32,
        top: &mut [f32],
        bottom: &mut [f32],
        tw: usize
    )
);

/// One task's working memory, reused across the tasks a thread runs.
#[derive(Default)]
struct Scratch {
    /// The transformed inputs, 16 matrices `[cin, tiles]`.
    v: Vec<f32>,
    /// Their products with the transformed weights, 16 matrices `[cout, tiles]`.
    m: Vec<f32>,
    /// One channel's band of padded input rows, split into even and odd columns.
    pad: Vec<f32>,
    /// Per-row intermediate values of the transforms.
    rows: Vec<f32>,
}

/// Grows `buffer` to at least `len` values (what it holds is overwritten before it is read).
fn grow(buffer: &mut Vec<f32>, len: usize) {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
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
    let band = |scratch: &mut Scratch, task: usize| {
        let Scratch {
            v,
            m,
            pad,
            rows: tmp,
        } = scratch;
        let (image, b) = (task / bands, task % bands);
        let ty0 = b * rows_per_task;
        let rows = rows_per_task.min(th - ty0);
        let n = rows * tw;
        let input = &x[image * cin * h * wd..(image + 1) * cin * h * wd];
        // V: 16 row-major matrices [cin, n]. Each channel's band of input rows is copied into
        // `pad` with its zero border, each row split into its even and odd padded columns.
        let half = tw + 1;
        let pad_rows = 2 * rows + 2;
        // Grown, never cleared: every element a task reads it first writes.
        grow(v, 16 * cin * n);
        grow(pad, pad_rows * 2 * half);
        grow(tmp, 8 * half);
        for c in 0..cin {
            let plane = &input[c * h * wd..(c + 1) * h * wd];
            for pr in 0..pad_rows {
                // Padded row pr is input row 2·ty0 − 1 + pr; padded column p is input column
                // p − 1, so the even columns hold the odd input columns and the reverse.
                let (even, odd) = pad[pr * 2 * half..(pr + 1) * 2 * half].split_at_mut(half);
                match (2 * ty0 + pr).checked_sub(1).filter(|&y| y < h) {
                    Some(y) => {
                        let line = &plane[y * wd..(y + 1) * wd];
                        // Input columns 2j and 2j + 1 are padded columns 2j + 1 and 2j + 2.
                        let pairs = line.chunks_exact(2);
                        let last = pairs.remainder().first().copied();
                        let full = wd / 2;
                        for (j, pair) in pairs.enumerate() {
                            odd[j] = pair[0];
                            even[j + 1] = pair[1];
                        }
                        even[0] = 0.0;
                        even[full + 1..].fill(0.0);
                        odd[full] = last.unwrap_or(0.0);
                        odd[full + 1..].fill(0.0);
                    }
                    None => {
                        even.fill(0.0);
                        odd.fill(0.0);
                    }
                }
            }
            for r in 0..rows {
                input_row(
                    &pad[2 * r * 2 * half..(2 * r + 4) * 2 * half],
                    tmp,
                    &mut v[c * n + r * tw..],
                    cin * n,
                    tw,
                );
            }
        }
        // M_ξ = U_ξ · V_ξ: 16 row-major matrices [cout, n].
        grow(m, 16 * cout * n);
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
        // Y = Aᵀ·M·A per row of tiles and channel, plus the bias, into the output.
        for co in 0..cout {
            let b = bias.map_or(0.0, |b| b[co]);
            let base = (image * cout + co) * h * wd;
            for r in 0..rows {
                let oy = 2 * (ty0 + r);
                let two_rows = if oy + 1 < h { 2 } else { 1 };
                // SAFETY: output rows oy (and oy + 1) of this channel lie in this task's band,
                // which no other task writes.
                let lines = unsafe {
                    std::slice::from_raw_parts_mut(shared.ptr().add(base + oy * wd), two_rows * wd)
                };
                let (top, bottom) = lines.split_at_mut(wd);
                output_row(&m[co * n + r * tw..], cout * n, tmp, b, top, bottom, tw);
            }
        }
    };
    if parallel_tasks {
        (0..tasks)
            .into_par_iter()
            .for_each_init(Scratch::default, |scratch, task| band(scratch, task));
    } else {
        let mut scratch = Scratch::default();
        (0..tasks).for_each(|task| band(&mut scratch, task));
    }
    out
}
