//! Euler and Euler ancestral, as diffusers' `EulerDiscreteScheduler` (no churn) and
//! `EulerAncestralDiscreteScheduler`. The ancestral noise is given by the caller.

use candle_core::Tensor;

use super::{interp, Prediction, Schedule, Spacing};
use crate::error::{EngineError, Result};

/// Euler (or Euler ancestral) prepared for one run.
pub struct Euler {
    /// UNet timesteps, highest first.
    pub timesteps: Vec<f64>,
    /// σ per step, with a final 0.
    pub sigmas: Vec<f64>,
    /// Adds fresh noise each step.
    pub ancestral: bool,
    prediction: Prediction,
    spacing: Spacing,
}

impl Euler {
    /// Prepares `steps` steps.
    pub fn new(schedule: &Schedule, steps: usize, ancestral: bool) -> Self {
        let timesteps = schedule.fractional_timesteps(steps);
        let train = schedule.train_sigmas();
        let mut sigmas: Vec<f64> = timesteps.iter().map(|t| interp(*t, &train)).collect();
        sigmas.push(0.0);
        Euler {
            timesteps,
            sigmas,
            ancestral,
            prediction: schedule.prediction,
            spacing: schedule.spacing,
        }
    }

    /// diffusers: σ_max for linspace/trailing spacing, else √(σ_max² + 1).
    pub fn init_noise_sigma(&self) -> f64 {
        let max = self.sigmas.iter().cloned().fold(0.0, f64::max);
        match self.spacing {
            Spacing::Linspace | Spacing::Trailing => max,
            Spacing::Leading => (max * max + 1.0).sqrt(),
        }
    }

    /// x / √(σ² + 1).
    pub fn scale_model_input(&self, latents: &Tensor, i: usize) -> Result<Tensor> {
        let s = self.sigmas[i];
        Ok((latents / (s * s + 1.0).sqrt())?)
    }

    /// One Euler step from σᵢ to σᵢ₊₁ (ancestral: to σ_down, then noise × σ_up).
    pub fn step(
        &self,
        model_output: &Tensor,
        i: usize,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        let sigma = self.sigmas[i];
        let next = self.sigmas[i + 1];
        let x0 = match self.prediction {
            Prediction::Epsilon => (sample - (model_output * sigma)?)?,
            Prediction::V => {
                let c = sigma * sigma + 1.0;
                ((model_output * (-sigma / c.sqrt()))? + (sample / c)?)?
            }
        };
        let derivative = ((sample - x0)? / sigma)?;
        if !self.ancestral {
            return Ok((sample + (derivative * (next - sigma))?)?);
        }
        let sigma_up = (next * next * (sigma * sigma - next * next) / (sigma * sigma)).sqrt();
        let sigma_down = (next * next - sigma_up * sigma_up).sqrt();
        let moved = (sample + (derivative * (sigma_down - sigma))?)?;
        let noise = noise.ok_or_else(|| {
            EngineError::InvalidRequest("Euler ancestral needs noise for each step".into())
        })?;
        Ok((moved + (noise * sigma_up)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SchedulerConfig;

    #[test]
    fn sigmas_and_init_noise_match_the_reference() {
        // Values from the tiny-sd15 fixture's euler_a/meta.json (diffusers 0.42.1).
        let c: SchedulerConfig = serde_json::from_value(serde_json::json!({
            "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "steps_offset": 1, "timestep_spacing": "leading"
        }))
        .unwrap();
        let e = Euler::new(&Schedule::from_config(&c).unwrap(), 4, true);
        let expected = [
            4.116698265075684,
            1.6236929893493652,
            0.6983985900878906,
            0.04131447896361351,
            0.0,
        ];
        for (a, b) in e.sigmas.iter().zip(expected) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert!((e.init_noise_sigma() - 4.236413955688477).abs() < 1e-5);
    }
}
