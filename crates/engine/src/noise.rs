//! Reproducible noise: every draw comes from a seeded generator on the CPU, then moves to the
//! device, so a seed gives the same image on every run of the same build and device.

use std::collections::VecDeque;
use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{EngineError, Result};

/// Where the initial latents and the per-step noise come from.
pub trait NoiseSource {
    /// The initial latents (standard normal, before `init_noise_sigma`), or the noise added
    /// to an image to start from. Drawn first.
    fn initial(&mut self, shape: &[usize]) -> Result<Tensor>;
    /// Noise sampling the VAE's latent distribution of an encoded image, one per image in the
    /// order they are encoded (the image to start from, then the masked image). Drawn after
    /// [`NoiseSource::initial`].
    fn posterior(&mut self, shape: &[usize]) -> Result<Tensor>;
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

    fn posterior(&mut self, shape: &[usize]) -> Result<Tensor> {
        self.draw(shape)
    }

    fn step(&mut self, shape: &[usize], _i: usize) -> Result<Tensor> {
        self.draw(shape)
    }
}

/// Given noise (from files, for reproducibility and parity with diffusers): the initial latents
/// and the VAE posterior noises; whatever is not given is drawn from the seed.
pub struct GivenNoise {
    initial: Option<Tensor>,
    posteriors: VecDeque<Tensor>,
    seeded: SeededNoise,
}

impl GivenNoise {
    /// Uses `latents` as the initial noise and `seed` for everything else.
    pub fn new(latents: Tensor, seed: u64) -> Self {
        GivenNoise {
            initial: Some(latents),
            posteriors: VecDeque::new(),
            seeded: SeededNoise::new(seed),
        }
    }

    /// Reads the initial latents from `latents` (a tensor `latents`, or the only one) and the
    /// noise diffusers' img2img and inpaint pipelines draw from `noise`: `add_noise_noise` (the
    /// noise added to the image, so also the initial noise) and `vae_sample_noise` (the posterior
    /// noises, `[n, 1, c, h, w]` in encoding order, or one `[1, c, h, w]`).
    pub fn load(latents: Option<&Path>, noise: Option<&Path>, seed: u64) -> Result<Self> {
        let mut given = GivenNoise {
            initial: latents.map(load_latents).transpose()?,
            posteriors: VecDeque::new(),
            seeded: SeededNoise::new(seed),
        };
        if let Some(path) = noise {
            let mut tensors = read(path)?;
            if let Some(added) = tensors.remove("add_noise_noise") {
                if given.initial.is_some() {
                    return Err(EngineError::InvalidRequest(format!(
                        "both the latents file and {} give the initial noise; give one",
                        path.display()
                    )));
                }
                given.initial = Some(added.to_dtype(DType::F32)?);
            }
            if let Some(samples) = tensors.remove("vae_sample_noise") {
                let samples = samples.to_dtype(DType::F32)?;
                if samples.rank() == 5 {
                    for k in 0..samples.dim(0)? {
                        given.posteriors.push_back(samples.i(k)?);
                    }
                } else {
                    given.posteriors.push_back(samples);
                }
            }
            if given.initial.is_none() && given.posteriors.is_empty() {
                return Err(EngineError::Weights {
                    file: path.to_path_buf(),
                    reason: "no tensor named \"add_noise_noise\" or \"vae_sample_noise\"".into(),
                });
            }
        }
        Ok(given)
    }
}

/// The shape `given` must have for `shape`, or an error saying what it is.
fn fitting(given: Tensor, shape: &[usize], what: &str) -> Result<Tensor> {
    if given.dims() != shape {
        return Err(EngineError::InvalidRequest(format!(
            "the given {what} have shape {:?}, but this size needs {shape:?}",
            given.dims()
        )));
    }
    Ok(given)
}

impl NoiseSource for GivenNoise {
    fn initial(&mut self, shape: &[usize]) -> Result<Tensor> {
        match self.initial.take() {
            Some(latents) => fitting(latents, shape, "initial latents"),
            None => self.seeded.initial(shape),
        }
    }

    fn posterior(&mut self, shape: &[usize]) -> Result<Tensor> {
        match self.posteriors.pop_front() {
            Some(noise) => fitting(noise, shape, "VAE sample noise"),
            None => self.seeded.posterior(shape),
        }
    }

    fn step(&mut self, shape: &[usize], i: usize) -> Result<Tensor> {
        self.seeded.step(shape, i)
    }
}

fn read(path: &Path) -> Result<std::collections::HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| EngineError::Weights {
        file: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Reads initial latents (`latents`, or the only tensor) from a safetensors file.
pub fn load_latents(path: &Path) -> Result<Tensor> {
    let mut tensors = read(path)?;
    let tensor = match tensors.remove("latents") {
        Some(t) => t,
        None if tensors.len() == 1 => tensors.into_values().next().expect("one tensor"),
        None => {
            return Err(EngineError::Weights {
                file: path.to_path_buf(),
                reason: "no tensor named \"latents\"".into(),
            })
        }
    };
    Ok(tensor.to_dtype(DType::F32)?)
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
