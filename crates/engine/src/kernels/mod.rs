//! The engine's own CPU kernels, as candle custom ops, for the layers where candle's CPU backend
//! is slow: convolution (no per-call weight re-layout, output written straight into NCHW, bias
//! fused), attention (blocks of queries with an online softmax, never a full score matrix),
//! GroupNorm fused with SiLU, and the GEGLU feed-forward gate. Each layer type here runs
//! candle's own ops on other devices and dtypes, and those ops are the reference its unit tests
//! compare against.

/// Defines `$name`, which runs `$generic` compiled for AVX-512 or AVX2+FMA when the CPU has
/// them, else as built.
macro_rules! dispatch {
    ($name:ident, $generic:ident, ($($arg:ident: $ty:ty),*)) => {
        #[doc = concat!("`", stringify!($generic), "` over the slices, vectorised for this CPU.")]
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn widest($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn wide($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports the features `widest` was compiled for.
                    return unsafe { widest($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports the features `wide` was compiled for.
                    return unsafe { wide($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}

mod attention;
mod conv;
mod geglu;
mod norm;
mod vmath;
mod winograd;

pub(crate) use attention::attention;
pub(crate) use conv::{conv2d, Conv2d};
pub(crate) use geglu::geglu;
pub(crate) use norm::{group_norm, GroupNorm};

use candle_core::{CpuStorage, DType, Layout, Result, Tensor};

/// The threads the kernels split work across: rayon's pool, which `RAYON_NUM_THREADS` sets
/// (candle's own CPU ops use the same pool).
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// Whether `t` takes the engine's CPU kernels (f32 on the CPU); other tensors take candle's ops.
fn on_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// The f32 values of a contiguous CPU tensor.
fn f32s<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: expected f32 data");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: the input is not contiguous"),
    }
}

/// A pointer that parallel tasks share to write disjoint parts of one output buffer.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: each task writes only the elements it owns (the callers split the output into
// disjoint regions), and the buffer outlives the parallel loop.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
mod test_support {
    use candle_core::{Device, Tensor};

    /// A deterministic pseudo-random tensor with values in [-scale, scale).
    pub fn random(shape: &[usize], seed: u64, scale: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let values: Vec<f32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).expect("shape matches")
    }

    /// Largest |a − b|, relative to max(1, largest |b|).
    pub fn rel_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let big = b.iter().fold(1f32, |m, x| m.max(x.abs()));
        a.iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
            / big
    }
}
