//! Our schedulers against diffusers' on a fixed, noise-free "model" (see
//! `data/make_scheduler_reference.py`, which wrote `data/scheduler_reference.json`).

use candle_core::{Device, Tensor};
use selfdiffusion_engine::config::SchedulerConfig;
use selfdiffusion_engine::schedulers::{Schedule, Scheduler, SchedulerKind};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    init: Vec<f32>,
    shape: Vec<usize>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    scheduler: String,
    config: serde_json::Value,
    steps: usize,
    timesteps: Vec<f64>,
    init_noise_sigma: f64,
    latents: Vec<Vec<f32>>,
}

#[test]
fn ddim_euler_and_dpmpp_match_diffusers_step_by_step() {
    let reference: Reference =
        serde_json::from_str(include_str!("data/scheduler_reference.json")).unwrap();
    let init = Tensor::from_vec(
        reference.init.clone(),
        reference.shape.as_slice(),
        &Device::Cpu,
    )
    .unwrap();
    for case in &reference.cases {
        let label = format!("{} {} steps {}", case.scheduler, case.steps, case.config);
        let config: SchedulerConfig = serde_json::from_value(case.config.clone()).unwrap();
        let schedule = Schedule::from_config(&config).unwrap();
        let mut scheduler = Scheduler::new(
            SchedulerKind::parse(&case.scheduler).unwrap(),
            &schedule,
            case.steps,
        );
        assert_eq!(
            scheduler.timesteps(),
            case.timesteps.as_slice(),
            "{label}: timesteps"
        );
        assert!(
            (scheduler.init_noise_sigma() - case.init_noise_sigma).abs() < 1e-4,
            "{label}: init_noise_sigma"
        );
        let mut x = (&init * scheduler.init_noise_sigma()).unwrap();
        let timesteps = scheduler.timesteps().to_vec();
        for (i, t) in timesteps.iter().enumerate() {
            let input = scheduler.scale_model_input(&x, i).unwrap();
            let output = ((input * 0.3).unwrap() + t / 100000.0).unwrap();
            x = scheduler.step(&output, i, &x, None).unwrap();
            let ours = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (a, b) in ours.iter().zip(&case.latents[i]) {
                let tol = 1e-4 * b.abs().max(1.0);
                assert!((a - b).abs() <= tol, "{label}: step {i}: {a} vs {b}");
            }
        }
    }
}
