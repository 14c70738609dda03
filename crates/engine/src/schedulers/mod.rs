//! Noise schedulers with diffusers' semantics, driven by step index. All schedule arithmetic is
//! in f64 on the CPU; only the per-step update touches tensors.

mod ddim;
mod dpm;
mod euler;

use candle_core::Tensor;

use crate::config::SchedulerConfig;
use crate::error::{EngineError, Result};

pub use ddim::Ddim;
pub use dpm::DpmPp2m;
pub use euler::Euler;

/// The schedulers this engine offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    /// DDIM (η = 0).
    Ddim,
    /// Euler (Karras et al. 2022, Algorithm 2, without churn).
    Euler,
    /// Euler ancestral.
    EulerAncestral,
    /// DPM-Solver++ 2M with Karras sigmas.
    DpmPp2mKarras,
}

impl SchedulerKind {
    /// Names accepted by [`SchedulerKind::parse`], in the order of the enum.
    pub const NAMES: &'static [&'static str] = &["ddim", "euler", "euler_a", "dpmpp_2m_karras"];

    /// Parses a scheduler name (case-insensitive; `-` and `_` alike).
    pub fn parse(name: &str) -> Result<Self> {
        let key = name.trim().to_ascii_lowercase().replace('-', "_");
        Ok(match key.as_str() {
            "ddim" => SchedulerKind::Ddim,
            "euler" => SchedulerKind::Euler,
            "euler_a" | "euler_ancestral" => SchedulerKind::EulerAncestral,
            "dpmpp_2m_karras" | "dpm++_2m_karras" => SchedulerKind::DpmPp2mKarras,
            _ => return Err(EngineError::UnknownScheduler(name.to_owned())),
        })
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The scheduler a model was saved with, if it is one of ours.
    pub fn from_class(class_name: &str) -> Option<Self> {
        match class_name {
            "DDIMScheduler" => Some(SchedulerKind::Ddim),
            "EulerDiscreteScheduler" => Some(SchedulerKind::Euler),
            "EulerAncestralDiscreteScheduler" => Some(SchedulerKind::EulerAncestral),
            "DPMSolverMultistepScheduler" => Some(SchedulerKind::DpmPp2mKarras),
            _ => None,
        }
    }
}

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    /// The noise ε.
    Epsilon,
    /// The velocity v = α·ε − σ·x₀.
    V,
}

/// How inference timesteps are picked from the training range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spacing {
    /// `leading`: multiples of N/steps from 0, plus `steps_offset`.
    Leading,
    /// `trailing`: from N − 1 down in equal strides.
    Trailing,
    /// `linspace`: evenly from 0 to N − 1.
    Linspace,
}

/// The schedule shared by all schedulers: ᾱ per training step and the parsed options.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// ᾱₜ = ∏(1 − βᵢ) for each training step.
    pub alphas_cumprod: Vec<f64>,
    /// What the model predicts.
    pub prediction: Prediction,
    /// How timesteps are spaced.
    pub spacing: Spacing,
    /// Offset for leading spacing.
    pub steps_offset: usize,
    /// DDIM's final ᾱ is 1 (else ᾱ₀).
    pub set_alpha_to_one: bool,
}

impl Schedule {
    /// Reads a `scheduler_config.json`.
    pub fn from_config(c: &SchedulerConfig) -> Result<Self> {
        let n = c.num_train_timesteps;
        if n < 2 {
            return Err(EngineError::Unsupported(format!("num_train_timesteps {n}")));
        }
        let betas: Vec<f64> = match c.beta_schedule.as_str() {
            "scaled_linear" => linspace(c.beta_start.sqrt(), c.beta_end.sqrt(), n)
                .into_iter()
                .map(|b| b * b)
                .collect(),
            "linear" => linspace(c.beta_start, c.beta_end, n),
            other => return Err(EngineError::Unsupported(format!("beta_schedule {other:?}"))),
        };
        let mut acc = 1.0;
        let alphas_cumprod = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect();
        let prediction = match c.prediction_type.as_str() {
            "epsilon" => Prediction::Epsilon,
            "v_prediction" => Prediction::V,
            other => {
                return Err(EngineError::Unsupported(format!(
                    "prediction_type {other:?}"
                )))
            }
        };
        let spacing = match c.timestep_spacing.as_str() {
            "leading" => Spacing::Leading,
            "trailing" => Spacing::Trailing,
            "linspace" => Spacing::Linspace,
            other => {
                return Err(EngineError::Unsupported(format!(
                    "timestep_spacing {other:?}"
                )))
            }
        };
        Ok(Schedule {
            alphas_cumprod,
            prediction,
            spacing,
            steps_offset: c.steps_offset,
            set_alpha_to_one: c.set_alpha_to_one,
        })
    }

    /// Number of training timesteps.
    pub fn train_steps(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// Inference timesteps, highest first, as diffusers' `set_timesteps` picks them (whole
    /// numbers, rounded half to even as numpy does).
    pub fn timesteps(&self, steps: usize) -> Vec<f64> {
        self.spaced(steps, true)
    }

    /// Like [`Schedule::timesteps`], but `linspace` spacing keeps fractional timesteps, as
    /// diffusers' Euler schedulers do.
    pub fn fractional_timesteps(&self, steps: usize) -> Vec<f64> {
        self.spaced(steps, false)
    }

    fn spaced(&self, steps: usize, round_linspace: bool) -> Vec<f64> {
        let n = self.train_steps();
        match self.spacing {
            Spacing::Leading => {
                let ratio = n / steps;
                (0..steps)
                    .rev()
                    .map(|i| (i * ratio + self.steps_offset) as f64)
                    .collect()
            }
            Spacing::Trailing => {
                let ratio = n as f64 / steps as f64;
                (0..steps)
                    .map(|i| (n as f64 - i as f64 * ratio).round_ties_even() - 1.0)
                    .collect()
            }
            Spacing::Linspace => linspace(0.0, (n - 1) as f64, steps)
                .into_iter()
                .rev()
                .map(|t| {
                    if round_linspace {
                        t.round_ties_even()
                    } else {
                        t
                    }
                })
                .collect(),
        }
    }

    /// σ for every training timestep: √((1 − ᾱ)/ᾱ).
    pub fn train_sigmas(&self) -> Vec<f64> {
        self.alphas_cumprod
            .iter()
            .map(|a| ((1.0 - a) / a).sqrt())
            .collect()
    }
}

/// `n` evenly spaced values from `a` to `b` inclusive.
pub(crate) fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![a];
    }
    (0..n)
        .map(|i| a + (b - a) * i as f64 / (n - 1) as f64)
        .collect()
}

/// Linear interpolation of `ys` sampled at 0, 1, 2, … at position `x` (as `np.interp`).
pub(crate) fn interp(x: f64, ys: &[f64]) -> f64 {
    if x <= 0.0 {
        return ys[0];
    }
    let last = ys.len() - 1;
    if x >= last as f64 {
        return ys[last];
    }
    let i = x.floor() as usize;
    let w = x - i as f64;
    ys[i] * (1.0 - w) + ys[i + 1] * w
}

/// A scheduler prepared for one run.
pub enum Scheduler {
    /// DDIM.
    Ddim(Ddim),
    /// Euler or Euler ancestral.
    Euler(Euler),
    /// DPM-Solver++ 2M Karras.
    DpmPp2m(DpmPp2m),
}

impl Scheduler {
    /// Prepares `kind` for `steps` inference steps.
    pub fn new(kind: SchedulerKind, schedule: &Schedule, steps: usize) -> Self {
        match kind {
            SchedulerKind::Ddim => Scheduler::Ddim(Ddim::new(schedule, steps)),
            SchedulerKind::Euler => Scheduler::Euler(Euler::new(schedule, steps, false)),
            SchedulerKind::EulerAncestral => Scheduler::Euler(Euler::new(schedule, steps, true)),
            SchedulerKind::DpmPp2mKarras => Scheduler::DpmPp2m(DpmPp2m::new(schedule, steps)),
        }
    }

    /// The timesteps passed to the UNet, one per step.
    pub fn timesteps(&self) -> &[f64] {
        match self {
            Scheduler::Ddim(s) => &s.timesteps,
            Scheduler::Euler(s) => &s.timesteps,
            Scheduler::DpmPp2m(s) => &s.timesteps,
        }
    }

    /// Factor applied to the initial noise.
    pub fn init_noise_sigma(&self) -> f64 {
        match self {
            Scheduler::Ddim(_) | Scheduler::DpmPp2m(_) => 1.0,
            Scheduler::Euler(s) => s.init_noise_sigma(),
        }
    }

    /// Scales the latents before the UNet at step `i`.
    pub fn scale_model_input(&self, latents: &Tensor, i: usize) -> Result<Tensor> {
        match self {
            Scheduler::Euler(s) => s.scale_model_input(latents, i),
            _ => Ok(latents.clone()),
        }
    }

    /// `x0` noised to the level of step `i`, as diffusers' `add_noise` at that step's timestep
    /// (img2img starts there; inpainting re-noises the kept region with it).
    pub fn add_noise(&self, x0: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        match self {
            Scheduler::Ddim(s) => s.add_noise(x0, noise, i),
            Scheduler::Euler(s) => Ok((x0 + (noise * s.sigmas[i])?)?),
            Scheduler::DpmPp2m(s) => {
                let (alpha, sigma) = DpmPp2m::alpha_sigma(s.sigmas[i]);
                Ok(((x0 * alpha)? + (noise * sigma)?)?)
            }
        }
    }

    /// Whether step `i` needs fresh noise (ancestral sampling).
    pub fn needs_noise(&self) -> bool {
        matches!(self, Scheduler::Euler(s) if s.ancestral)
    }

    /// Advances the latents by step `i` given the model output (and noise, when needed).
    pub fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        latents: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        match self {
            Scheduler::Ddim(s) => s.step(model_output, i, latents),
            Scheduler::Euler(s) => s.step(model_output, i, latents, noise),
            Scheduler::DpmPp2m(s) => s.step(model_output, i, latents),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd15(spacing: &str) -> Schedule {
        let c: SchedulerConfig = serde_json::from_value(serde_json::json!({
            "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "steps_offset": 1, "timestep_spacing": spacing, "set_alpha_to_one": false
        }))
        .unwrap();
        Schedule::from_config(&c).unwrap()
    }

    #[test]
    fn timesteps_follow_each_spacing() {
        assert_eq!(sd15("leading").timesteps(4), vec![751.0, 501.0, 251.0, 1.0]);
        assert_eq!(
            sd15("trailing").timesteps(4),
            vec![999.0, 749.0, 499.0, 249.0]
        );
        assert_eq!(
            sd15("linspace").timesteps(4),
            vec![999.0, 666.0, 333.0, 0.0]
        );
        assert_eq!(sd15("trailing").timesteps(1), vec![999.0]);
    }

    #[test]
    fn names_round_trip_and_unknown_lists_valid_ones() {
        for name in SchedulerKind::NAMES {
            assert_eq!(SchedulerKind::parse(name).unwrap().name(), *name);
        }
        assert_eq!(
            SchedulerKind::parse("Euler-A").unwrap(),
            SchedulerKind::EulerAncestral
        );
        let err = SchedulerKind::parse("plms").unwrap_err().to_string();
        assert!(
            err.contains("ddim, euler, euler_a, dpmpp_2m_karras"),
            "{err}"
        );
    }

    #[test]
    fn interp_matches_numpy() {
        let ys = [0.0, 10.0, 20.0];
        assert_eq!(interp(-1.0, &ys), 0.0);
        assert_eq!(interp(0.5, &ys), 5.0);
        assert_eq!(interp(1.25, &ys), 12.5);
        assert_eq!(interp(9.0, &ys), 20.0);
    }
}
