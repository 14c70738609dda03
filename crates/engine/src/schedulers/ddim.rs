//! DDIM with η = 0, as diffusers' `DDIMScheduler`.

use candle_core::Tensor;

use super::{Prediction, Schedule};
use crate::error::Result;

/// DDIM prepared for one run.
pub struct Ddim {
    /// UNet timesteps, highest first.
    pub timesteps: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    final_alpha: f64,
    stride: usize,
    prediction: Prediction,
}

impl Ddim {
    /// Prepares `steps` steps.
    pub fn new(schedule: &Schedule, steps: usize) -> Self {
        Ddim {
            timesteps: schedule.timesteps(steps),
            alphas_cumprod: schedule.alphas_cumprod.clone(),
            final_alpha: if schedule.set_alpha_to_one {
                1.0
            } else {
                schedule.alphas_cumprod[0]
            },
            stride: schedule.train_steps() / steps,
            prediction: schedule.prediction,
        }
    }

    /// `x0` noised to the level of step `i`: √ᾱₜ·x₀ + √(1 − ᾱₜ)·ε.
    pub fn add_noise(&self, x0: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        let alpha = self.alphas_cumprod[self.timesteps[i] as usize];
        Ok(((x0 * alpha.sqrt())? + (noise * (1.0 - alpha).sqrt())?)?)
    }

    /// One DDIM update from step `i`'s timestep to the previous one.
    pub fn step(&self, model_output: &Tensor, i: usize, sample: &Tensor) -> Result<Tensor> {
        let t = self.timesteps[i] as usize;
        let alpha = self.alphas_cumprod[t];
        let alpha_prev = t
            .checked_sub(self.stride)
            .map_or(self.final_alpha, |p| self.alphas_cumprod[p]);
        let (sqrt_a, sqrt_1a) = (alpha.sqrt(), (1.0 - alpha).sqrt());
        let (x0, eps) = match self.prediction {
            Prediction::Epsilon => (
                ((sample - (model_output * sqrt_1a)?)? / sqrt_a)?,
                model_output.clone(),
            ),
            Prediction::V => (
                ((sample * sqrt_a)? - (model_output * sqrt_1a)?)?,
                ((model_output * sqrt_a)? + (sample * sqrt_1a)?)?,
            ),
        };
        Ok(((x0 * alpha_prev.sqrt())? + (eps * (1.0 - alpha_prev).sqrt())?)?)
    }
}
