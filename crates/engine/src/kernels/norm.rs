//! GroupNorm, optionally followed by SiLU (every resnet norms then activates). On the CPU (f32)
//! one task per (image, group) takes the group's mean and variance in two passes over its
//! contiguous values (sums in f64) and writes normalised, scaled, shifted and activated values
//! in a third, where candle's composition makes about eight passes and as many tensors.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::{f32s, on_cpu_f32, vmath};

/// GroupNorm over `[batch, channels, …]` with a per-channel scale and shift.
#[derive(Clone, Debug)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

/// Reads a GroupNorm's `weight` and `bias` from `vb`, as `candle_nn::group_norm` does.
pub(crate) fn group_norm(
    groups: usize,
    channels: usize,
    eps: f64,
    vb: VarBuilder,
) -> Result<GroupNorm> {
    if groups == 0 || !channels.is_multiple_of(groups) {
        candle_core::bail!("group norm: {channels} channels do not split into {groups} groups");
    }
    Ok(GroupNorm {
        weight: vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.0))?,
        bias: vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.0))?,
        groups,
        eps,
    })
}

impl Module for GroupNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.norm(xs, false)
    }
}

impl GroupNorm {
    /// The normalised `xs`, through SiLU when `silu`.
    pub(crate) fn norm(&self, xs: &Tensor, silu: bool) -> Result<Tensor> {
        if xs.rank() < 3 || xs.dim(1)? != self.weight.dim(0)? {
            candle_core::bail!(
                "group norm of {} channels given {:?}",
                self.weight.dim(0)?,
                xs.dims()
            );
        }
        if on_cpu_f32(xs) && on_cpu_f32(&self.weight) {
            xs.contiguous()?.apply_op3_no_bwd(
                &self.weight.contiguous()?,
                &self.bias.contiguous()?,
                &CpuGroupNorm {
                    groups: self.groups,
                    eps: self.eps,
                    silu,
                },
            )
        } else {
            let normed = self.reference(xs)?;
            if silu {
                candle_nn::ops::silu(&normed)
            } else {
                Ok(normed)
            }
        }
    }

    /// candle-nn's GroupNorm (in f32 for half-precision inputs).
    fn reference(&self, xs: &Tensor) -> Result<Tensor> {
        let dims = xs.dims().to_vec();
        let dtype = xs.dtype();
        let (batch, channels) = (dims[0], dims[1]);
        let per_group = xs.elem_count() / batch / self.groups;
        let x = xs
            .to_dtype(DType::F32)?
            .reshape((batch, self.groups, per_group))?;
        let mean = (x.sum_keepdim(2)? / per_group as f64)?;
        let x = x.broadcast_sub(&mean)?;
        let var = (x.sqr()?.sum_keepdim(2)? / per_group as f64)?;
        let x = x.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let mut affine = vec![1; dims.len()];
        affine[1] = channels;
        x.to_dtype(dtype)?
            .reshape(dims)?
            .broadcast_mul(&self.weight.reshape(affine.clone())?)?
            .broadcast_add(&self.bias.reshape(affine)?)
    }
}

struct CpuGroupNorm {
    groups: usize,
    eps: f64,
    silu: bool,
}

impl CustomOp3 for CpuGroupNorm {
    fn name(&self) -> &'static str {
        "selfdiffusion-group-norm"
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
        let x = f32s(xs, xl, self.name())?;
        let (weight, bias) = (f32s(ws, wl, self.name())?, f32s(bs, bl, self.name())?);
        let dims = xl.shape().dims();
        let channels = dims[1];
        let spatial: usize = dims[2..].iter().product();
        let per_channel_group = channels / self.groups;
        let group_len = per_channel_group * spatial;
        let mut out = x.to_vec();
        out.par_chunks_mut(group_len)
            .enumerate()
            .for_each(|(task, values)| {
                let n = values.len() as f64;
                let mean = sum_f64(values.iter().map(|&v| v as f64)) / n;
                let var = sum_f64(values.iter().map(|&v| {
                    let c = v as f64 - mean;
                    c * c
                })) / n;
                let inv = 1.0 / (var + self.eps).sqrt();
                let first_channel = (task % self.groups) * per_channel_group;
                for (i, plane) in values.chunks_exact_mut(spatial).enumerate() {
                    let c = first_channel + i;
                    let scale = (inv * weight[c] as f64) as f32;
                    vmath::center_scale_silu_in_place(
                        plane,
                        mean as f32,
                        scale,
                        bias[c],
                        self.silu,
                    );
                }
            });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }
}

/// A sum over four running totals (so the additions need not wait on each other).
fn sum_f64(values: impl Iterator<Item = f64>) -> f64 {
    let mut acc = [0f64; 4];
    for (i, v) in values.enumerate() {
        acc[i & 3] += v;
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{random, rel_diff};
    use super::*;

    fn norm(groups: usize, channels: usize) -> GroupNorm {
        GroupNorm {
            weight: random(&[channels], 11, 1.5),
            bias: random(&[channels], 12, 0.5),
            groups,
            eps: 1e-5,
        }
    }

    #[test]
    fn matches_candle_with_and_without_silu() {
        for (groups, channels, h, w) in [(4, 12, 9, 7), (32, 64, 8, 8), (2, 2, 1, 1)] {
            let gn = norm(groups, channels);
            // An offset mean, where a one-pass variance would lose digits.
            let xs = (random(&[2, channels, h, w], 13, 3.0) + 20.0).unwrap();
            let plain = gn.reference(&xs).unwrap();
            assert!(rel_diff(&gn.norm(&xs, false).unwrap(), &plain) <= 1e-5);
            let activated = candle_nn::ops::silu(&plain).unwrap();
            assert!(rel_diff(&gn.norm(&xs, true).unwrap(), &activated) <= 1e-5);
        }
    }

    #[test]
    fn a_sequence_layout_is_normed_too() {
        // [batch, channels, tokens], as the VAE's attention norms.
        let gn = norm(4, 8);
        let xs = random(&[1, 8, 50], 14, 1.0);
        assert!(rel_diff(&gn.forward(&xs).unwrap(), &gn.reference(&xs).unwrap()) <= 1e-5);
    }

    #[test]
    fn the_wrong_channel_count_is_refused() {
        assert!(norm(4, 8).forward(&random(&[1, 4, 3, 3], 1, 1.0)).is_err());
    }
}
