//! 2-D convolution on the CPU (f32). 3×3 same-size convolutions of large maps go through
//! Winograd's F(2×2, 3×3) (`winograd.rs`). The others use the weights in the layout they were
//! loaded in (`[out, in·kh·kw]` is already the matrix a convolution multiplies by): the input
//! is unrolled (im2col) a tile of output rows at a time straight from NCHW, and each tile's
//! matrix product is written into its place in the NCHW output on top of the bias. A 1×1
//! convolution with stride 1 multiplies the input in place, without unrolling. Tiles run in
//! parallel when there are enough of them; otherwise one tile at a time with the matrix product
//! itself parallel, so parallel loops never nest.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::{f32s, on_cpu_f32, threads, winograd, SharedOut};
use crate::half_weights::widened;

/// Output pixels per im2col tile.
const TILE_PIXELS: usize = 512;

/// 3×3 same-size convolutions with at least this many output pixels (and 16 channels in and
/// out) use Winograd's F(2×2, 3×3); on smaller maps the weight transform would cost more than
/// the multiplications it saves.
const WINOGRAD_MIN_PIXELS: usize = 32 * 32;

/// A convolution layer with square kernels, zero padding and no groups or dilation, as every
/// convolution of the UNet and the VAE is.
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
}

/// Reads a convolution's `weight` (`[out, in, k, k]`) and `bias` from `vb`, as
/// `candle_nn::conv2d` does.
pub(crate) fn conv2d(
    cin: usize,
    cout: usize,
    kernel: usize,
    config: Conv2dConfig,
    vb: VarBuilder,
) -> Result<Conv2d> {
    if config.groups != 1 || config.dilation != 1 {
        candle_core::bail!("conv2d: groups and dilation are not supported");
    }
    let inner = candle_nn::conv2d(cin, cout, kernel, config, vb)?;
    Ok(Conv2d {
        weight: inner.weight().clone(),
        bias: inner.bias().cloned(),
        stride: config.stride,
        padding: config.padding,
    })
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        // Weights kept in half precision are widened for this call only.
        let weight = widened(&self.weight, xs.dtype())?;
        if on_cpu_f32(xs) && on_cpu_f32(&weight) {
            let op = CpuConv {
                stride: self.stride,
                padding: self.padding,
            };
            let (xs, weight) = (xs.contiguous()?, weight.contiguous()?);
            match &self.bias {
                Some(bias) => xs.apply_op3_no_bwd(&weight, &bias.contiguous()?, &op),
                None => xs.apply_op2_no_bwd(&weight, &op),
            }
        } else {
            self.reference(xs, &weight)
        }
    }
}

impl Conv2d {
    /// candle's convolution with `weight` (this layer's, in the input's dtype).
    fn reference(&self, xs: &Tensor, weight: &Tensor) -> Result<Tensor> {
        let ys = xs.conv2d(weight, self.padding, self.stride, 1, 1)?;
        match &self.bias {
            Some(bias) => ys.broadcast_add(&bias.reshape((1, (), 1, 1))?),
            None => Ok(ys),
        }
    }
}

struct CpuConv {
    stride: usize,
    padding: usize,
}

/// The sizes of one convolution call.
#[derive(Clone, Copy)]
pub(super) struct Dims {
    pub batch: usize,
    pub cin: usize,
    pub ih: usize,
    pub iw: usize,
    pub cout: usize,
    pub k: usize,
    pub oh: usize,
    pub ow: usize,
}

impl CpuConv {
    fn dims(&self, xl: &Layout, wl: &Layout) -> Result<Dims> {
        let (batch, cin, ih, iw) = xl.shape().dims4()?;
        let (cout, wcin, kh, kw) = wl.shape().dims4()?;
        if wcin != cin || kh != kw || self.stride == 0 {
            candle_core::bail!(
                "conv2d: input {:?} does not fit weights {:?}",
                xl.shape(),
                wl.shape()
            );
        }
        let (ph, pw) = (ih + 2 * self.padding, iw + 2 * self.padding);
        if ph < kh || pw < kw {
            candle_core::bail!("conv2d: input {ih}×{iw} is smaller than the {kh}×{kw} kernel");
        }
        Ok(Dims {
            batch,
            cin,
            ih,
            iw,
            cout,
            k: kh,
            oh: (ph - kh) / self.stride + 1,
            ow: (pw - kw) / self.stride + 1,
        })
    }

    fn run(&self, x: &[f32], w: &[f32], bias: Option<&[f32]>, d: Dims) -> Vec<f32> {
        let pixels = d.oh * d.ow;
        if d.k == 3
            && self.stride == 1
            && self.padding == 1
            && pixels >= WINOGRAD_MIN_PIXELS
            && d.cin >= 16
            && d.cout >= 16
        {
            return winograd::conv3x3(x, w, bias, d);
        }
        let depth = d.cin * d.k * d.k;
        let direct = d.k == 1 && self.stride == 1 && self.padding == 0;
        let rows_per_tile = (TILE_PIXELS / d.ow).clamp(1, d.oh);
        let tiles_per_image = d.oh.div_ceil(rows_per_tile);
        let tasks = d.batch * tiles_per_image;
        let mut out = vec![0f32; d.batch * d.cout * pixels];
        let shared = SharedOut(out.as_mut_ptr());
        let parallel_tiles = tasks >= 2 * threads();
        let inner = if parallel_tiles || threads() == 1 {
            Parallelism::None
        } else {
            Parallelism::Rayon(threads())
        };
        let tile = |col: &mut Vec<f32>, task: usize| {
            let (image, t) = (task / tiles_per_image, task % tiles_per_image);
            let row0 = t * rows_per_tile;
            let rows = rows_per_tile.min(d.oh - row0);
            let n = rows * d.ow;
            let input = &x[image * d.cin * d.ih * d.iw..(image + 1) * d.cin * d.ih * d.iw];
            let rhs: &[f32] = if direct {
                &input[row0 * d.ow..]
            } else {
                self.unroll(input, d, row0, rows, col);
                col
            };
            let rhs_rs = if direct { pixels } else { n };
            let dst_offset = image * d.cout * pixels + row0 * d.ow;
            if let Some(bias) = bias {
                for (c, &b) in bias.iter().enumerate() {
                    // SAFETY: row c of this task's output block: n elements at
                    // dst_offset + c·pixels, owned by this task.
                    let row = unsafe {
                        std::slice::from_raw_parts_mut(shared.ptr().add(dst_offset + c * pixels), n)
                    };
                    row.fill(b);
                }
            }
            // SAFETY: dst is this task's [cout, n] block of the output (rows `pixels` apart),
            // lhs the [cout, depth] weights, rhs the [depth, n] unrolled (or direct) input.
            unsafe {
                gemm(
                    d.cout,
                    n,
                    depth,
                    shared.ptr().add(dst_offset),
                    1,
                    pixels as isize,
                    bias.is_some(),
                    w.as_ptr(),
                    1,
                    depth as isize,
                    rhs.as_ptr(),
                    1,
                    rhs_rs as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    inner,
                );
            }
        };
        if parallel_tiles {
            (0..tasks)
                .into_par_iter()
                .for_each_init(Vec::new, |col, task| tile(col, task));
        } else {
            let mut col = Vec::new();
            (0..tasks).for_each(|task| tile(&mut col, task));
        }
        out
    }

    /// Writes the `[cin·k·k, rows·ow]` im2col matrix of output rows `row0..row0 + rows` of
    /// one image (`input` is its `[cin, ih, iw]`) into `col`.
    fn unroll(&self, input: &[f32], d: Dims, row0: usize, rows: usize, col: &mut Vec<f32>) {
        let n = rows * d.ow;
        col.clear();
        col.resize(d.cin * d.k * d.k * n, 0.0);
        let (s, p) = (self.stride, self.padding as isize);
        let mut dst = col.chunks_exact_mut(n);
        for c in 0..d.cin {
            let plane = &input[c * d.ih * d.iw..(c + 1) * d.ih * d.iw];
            for ky in 0..d.k {
                for kx in 0..d.k {
                    let out = dst.next().expect("one row per (channel, ky, kx)");
                    // Output columns whose input column is inside the image.
                    let x_of = |ox: usize| (ox * s + kx) as isize - p;
                    let first = (0..d.ow).find(|&ox| x_of(ox) >= 0).unwrap_or(d.ow);
                    let last = (0..d.ow)
                        .rev()
                        .find(|&ox| x_of(ox) < d.iw as isize)
                        .map_or(0, |ox| ox + 1);
                    for r in 0..rows {
                        let iy = ((row0 + r) * s + ky) as isize - p;
                        let line = &mut out[r * d.ow..(r + 1) * d.ow];
                        if iy < 0 || iy >= d.ih as isize || first >= last {
                            continue; // stays zero: padding
                        }
                        let src = &plane[iy as usize * d.iw..(iy as usize + 1) * d.iw];
                        if s == 1 {
                            let x0 = x_of(first) as usize;
                            line[first..last].copy_from_slice(&src[x0..x0 + last - first]);
                        } else {
                            for ox in first..last {
                                line[ox] = src[x_of(ox) as usize];
                            }
                        }
                    }
                }
            }
        }
    }

    fn forward(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let name = "selfdiffusion-conv2d";
        let d = self.dims(xl, wl)?;
        let bias = match bias {
            Some((bs, bl)) => {
                let b = f32s(bs, bl, name)?;
                if b.len() != d.cout {
                    candle_core::bail!("conv2d: {} biases for {} outputs", b.len(), d.cout);
                }
                Some(b)
            }
            None => None,
        };
        let out = self.run(f32s(xs, xl, name)?, f32s(ws, wl, name)?, bias, d);
        Ok((
            CpuStorage::F32(out),
            Shape::from_dims(&[d.batch, d.cout, d.oh, d.ow]),
        ))
    }
}

impl CustomOp2 for CpuConv {
    fn name(&self) -> &'static str {
        "selfdiffusion-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward(xs, xl, ws, wl, None)
    }
}

impl CustomOp3 for CpuConv {
    fn name(&self) -> &'static str {
        "selfdiffusion-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward(xs, xl, ws, wl, Some((bs, bl)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{random, rel_diff};
    use super::*;

    fn layer(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Conv2d {
        Conv2d {
            weight: random(&[cout, cin, k, k], 7, 0.5),
            bias: bias.then(|| random(&[cout], 8, 1.0)),
            stride,
            padding,
        }
    }

    #[test]
    fn matches_candle_for_every_shape_the_models_use() {
        // 3×3 same-size, the stride-2 downsample with and without padding, 1×1 (direct), a
        // 1×1 with padding (unrolled), a width that leaves a short last tile, and the VAE's
        // 3-channel input.
        for (cin, cout, k, stride, padding, h, w, bias) in [
            (5, 7, 3, 1, 1, 13, 11, true),
            (6, 6, 3, 2, 1, 12, 10, true),
            (6, 6, 3, 2, 0, 13, 13, false),
            (9, 4, 1, 1, 0, 40, 33, true),
            (4, 3, 1, 1, 1, 5, 6, false),
            (3, 8, 3, 1, 1, 70, 9, true),
            (4, 4, 3, 1, 1, 1, 1, true),
            // Winograd: even and odd sides (partial edge tiles), with and without bias.
            (16, 24, 3, 1, 1, 32, 32, true),
            (20, 16, 3, 1, 1, 33, 37, false),
            (16, 16, 3, 1, 1, 40, 95, true),
            // Winograd over as many channels as the UNet's first level sums.
            (320, 32, 3, 1, 1, 32, 34, true),
        ] {
            let conv = layer(cin, cout, k, stride, padding, bias);
            let xs = random(&[2, cin, h, w], 9, 2.0);
            let ours = conv.forward(&xs).unwrap();
            let theirs = conv.reference(&xs, &conv.weight).unwrap();
            let diff = rel_diff(&ours, &theirs);
            assert!(
                diff <= 1e-5,
                "{cin}→{cout} k{k} s{stride} p{padding} {h}×{w}: {diff}"
            );
        }
    }

    #[test]
    fn a_strided_input_is_made_contiguous() {
        let conv = layer(4, 5, 3, 1, 1, true);
        let xs = random(&[2, 6, 4, 4], 10, 1.0).narrow(1, 1, 4).unwrap();
        let diff = rel_diff(
            &conv.forward(&xs).unwrap(),
            &conv.reference(&xs, &conv.weight).unwrap(),
        );
        assert!(diff <= 1e-5);
    }

    #[test]
    fn mismatched_channels_are_refused() {
        let conv = layer(4, 5, 3, 1, 1, true);
        assert!(conv.forward(&random(&[1, 3, 4, 4], 1, 1.0)).is_err());
    }
}
