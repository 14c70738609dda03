//! Reproducible noise: every draw comes from a seeded generator on the CPU, then moves to the
//! device, so a seed gives the same image on every run of the same build and device.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::Result;

/// Where the initial latents and the per-step noise come from.
pub trait NoiseSource {
    /// The initial latents (standard normal, before `init_noise_sigma`).
    fn initial(&mut self, shape: &[usize]) -> Result<Tensor>;
    /// Fresh noise for step `i` (ancestral schedulers only).
    fn step(&mut self, shape: &[usize], i: usize) -> Result<Tensor>;
}

/// Standard normal noise from ChaCha8 seeded with the image's seed.
pub struct SeededNoise {
    rng: ChaCha8Rng,
}

impl SeededNoise {
    /// A generator for one image's seed.
    pub fn new(seed: u64) -> Self {
        SeededNoise {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn draw(&mut self, shape: &[usize]) -> Result<Tensor> {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| StandardNormal.sample(&mut self.rng))
            .collect();
        Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
    }
}

impl NoiseSource for SeededNoise {
    fn initial(&mut self, shape: &[usize]) -> Result<Tensor> {
        self.draw(shape)
    }

    fn step(&mut self, shape: &[usize], _i: usize) -> Result<Tensor> {
        self.draw(shape)
    }
}

/// Given initial latents (from a file, for reproducibility), with seeded per-step noise.
pub struct GivenLatents {
    latents: Option<Tensor>,
    steps: SeededNoise,
}

impl GivenLatents {
    /// Uses `latents` as the initial noise and `seed` for any per-step noise.
    pub fn new(latents: Tensor, seed: u64) -> Self {
        GivenLatents {
            latents: Some(latents),
            steps: SeededNoise::new(seed),
        }
    }
}

impl NoiseSource for GivenLatents {
    fn initial(&mut self, shape: &[usize]) -> Result<Tensor> {
        let latents = self.latents.take().expect("initial latents are drawn once");
        if latents.dims() != shape {
            return Err(crate::EngineError::InvalidRequest(format!(
                "the initial latents have shape {:?}, but this size needs {shape:?}",
                latents.dims()
            )));
        }
        Ok(latents)
    }

    fn step(&mut self, shape: &[usize], i: usize) -> Result<Tensor> {
        self.steps.step(shape, i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_noise_and_different_seeds_differ() {
        let noise = |seed| {
            SeededNoise::new(seed)
                .initial(&[1, 4, 2, 2])
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let (a, b, c) = (noise(7), noise(7), noise(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 1.0);
    }
}
