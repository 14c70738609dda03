//! DPM-Solver++ 2M with Karras sigmas, as diffusers' `DPMSolverMultistepScheduler` with
//! `use_karras_sigmas=True`, `algorithm_type="dpmsolver++"`, `solver_order=2` and
//! `final_sigmas_type="zero"` (so the last step is first order and lands on x₀).

use candle_core::Tensor;

use super::{linspace, Prediction, Schedule};
use crate::error::Result;

/// Karras ρ.
const RHO: f64 = 7.0;

/// DPM-Solver++ 2M prepared for one run.
pub struct DpmPp2m {
    /// UNet timesteps, highest first.
    pub timesteps: Vec<f64>,
    /// σ per step, with a final 0.
    pub sigmas: Vec<f64>,
    prediction: Prediction,
    previous_x0: Option<Tensor>,
}

/// The timestep whose σ is `sigma`, interpolating log σ (diffusers' `_sigma_to_t`).
fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.ln();
    let low = log_sigmas
        .iter()
        .rposition(|l| log_sigma >= *l)
        .unwrap_or(0)
        .min(log_sigmas.len() - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

impl DpmPp2m {
    /// Prepares `steps` steps.
    pub fn new(schedule: &Schedule, steps: usize) -> Self {
        let train = schedule.train_sigmas();
        let log_sigmas: Vec<f64> = train.iter().map(|s| s.ln()).collect();
        // diffusers spans the Karras ramp over the whole training range, whatever the spacing.
        let n = schedule.train_steps();
        let sigma_min = train[0];
        let sigma_max = train[n - 1];
        let (min_inv, max_inv) = (sigma_min.powf(1.0 / RHO), sigma_max.powf(1.0 / RHO));
        let mut sigmas: Vec<f64> = linspace(0.0, 1.0, steps)
            .into_iter()
            .map(|r| (max_inv + r * (min_inv - max_inv)).powf(RHO))
            .collect();
        let timesteps = sigmas
            .iter()
            .map(|s| sigma_to_t(*s, &log_sigmas).round_ties_even())
            .collect();
        sigmas.push(0.0);
        DpmPp2m {
            timesteps,
            sigmas,
            prediction: schedule.prediction,
            previous_x0: None,
        }
    }

    /// (αₜ, σₜ) of the variance-preserving form of σ.
    pub(super) fn alpha_sigma(sigma: f64) -> (f64, f64) {
        let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
        (alpha, sigma * alpha)
    }

    /// One multistep update from step `i` to `i + 1`.
    pub fn step(&mut self, model_output: &Tensor, i: usize, sample: &Tensor) -> Result<Tensor> {
        let (alpha_s, sigma_s) = Self::alpha_sigma(self.sigmas[i]);
        let (alpha_t, sigma_t) = Self::alpha_sigma(self.sigmas[i + 1]);
        let x0 = match self.prediction {
            Prediction::Epsilon => ((sample - (model_output * sigma_s)?)? / alpha_s)?,
            Prediction::V => ((sample * alpha_s)? - (model_output * sigma_s)?)?,
        };
        // The first step has no history; the last is first order (`final_sigmas_type="zero"`).
        let last = i + 1 == self.timesteps.len();
        let lambda = |alpha: f64, sigma: f64| alpha.ln() - sigma.ln();
        let lambda_s = lambda(alpha_s, sigma_s);
        let lambda_t = lambda(alpha_t, sigma_t);
        let h = lambda_t - lambda_s;
        // e^(−h) − 1; at σₜ = 0, λₜ = ∞ and the factor is −1.
        let phi = if sigma_t == 0.0 {
            -1.0
        } else {
            (-h).exp() - 1.0
        };
        let ratio = sigma_t / sigma_s;
        let next = match (&self.previous_x0, last) {
            (Some(prev), false) => {
                let (alpha_p, sigma_p) = Self::alpha_sigma(self.sigmas[i - 1]);
                let r = (lambda_s - lambda(alpha_p, sigma_p)) / h;
                let d1 = ((&x0 - prev)? * (1.0 / r))?;
                (((sample * ratio)? - (&x0 * (alpha_t * phi))?)? - (d1 * (0.5 * alpha_t * phi))?)?
            }
            _ => ((sample * ratio)? - (&x0 * (alpha_t * phi))?)?,
        };
        self.previous_x0 = Some(x0);
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SchedulerConfig;

    fn schedule() -> Schedule {
        let c: SchedulerConfig = serde_json::from_value(serde_json::json!({
            "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "steps_offset": 1, "timestep_spacing": "leading"
        }))
        .unwrap();
        Schedule::from_config(&c).unwrap()
    }

    #[test]
    fn karras_sigmas_span_the_training_range_and_map_back_to_timesteps() {
        let s = DpmPp2m::new(&schedule(), 20);
        assert_eq!(s.sigmas.len(), 21);
        assert!((s.sigmas[0] - 14.614641).abs() < 1e-4, "{}", s.sigmas[0]);
        assert!((s.sigmas[19] - 0.029167).abs() < 1e-5, "{}", s.sigmas[19]);
        assert!(s.sigmas.windows(2).all(|w| w[0] > w[1]));
        assert_eq!(s.timesteps[0], 999.0);
        assert_eq!(s.timesteps[19], 0.0);
    }

    #[test]
    fn the_last_step_lands_on_the_predicted_clean_sample() {
        let device = candle_core::Device::Cpu;
        let mut s = DpmPp2m::new(&schedule(), 3);
        let x = Tensor::new(&[1.0f32, -2.0, 0.5], &device).unwrap();
        let eps = Tensor::new(&[0.1f32, 0.2, -0.3], &device).unwrap();
        let mut lat = x.clone();
        for i in 0..2 {
            lat = s.step(&eps, i, &lat).unwrap();
        }
        let sigma = s.sigmas[2];
        let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
        let expected = ((&lat - (&eps * (sigma * alpha)).unwrap()).unwrap() / alpha).unwrap();
        let out = s.step(&eps, 2, &lat).unwrap();
        let diff = (out - expected)
            .unwrap()
            .abs()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "{diff}");
    }
}
