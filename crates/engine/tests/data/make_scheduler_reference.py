#!/usr/bin/env python3
"""Writes scheduler_reference.json: diffusers' schedulers driven by a fixed, simple "model"
(out = 0.3·x_in + t/100000), so tests/schedulers.rs can check ours step by step without noise.

Run with diffusers installed (recipe in crates/engine/benches/diffusers_reference.py):
    python crates/engine/tests/data/make_scheduler_reference.py
"""
import inspect
import json
import os

import diffusers
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

BASE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            steps_offset=1, clip_sample=False, set_alpha_to_one=False)
CASES = [
    ("ddim", DDIMScheduler, dict(prediction_type="epsilon", timestep_spacing="leading"), 4),
    ("ddim", DDIMScheduler, dict(prediction_type="v_prediction", timestep_spacing="trailing"), 5),
    ("ddim", DDIMScheduler, dict(prediction_type="epsilon", timestep_spacing="linspace"), 7),
    ("euler", EulerDiscreteScheduler, dict(prediction_type="epsilon", timestep_spacing="leading"), 6),
    ("euler", EulerDiscreteScheduler, dict(prediction_type="v_prediction", timestep_spacing="trailing"), 5),
    ("dpmpp_2m_karras", DPMSolverMultistepScheduler,
     dict(prediction_type="epsilon", timestep_spacing="leading", use_karras_sigmas=True,
          algorithm_type="dpmsolver++", solver_order=2), 8),
    ("dpmpp_2m_karras", DPMSolverMultistepScheduler,
     dict(prediction_type="epsilon", timestep_spacing="leading", use_karras_sigmas=True,
          algorithm_type="dpmsolver++", solver_order=2), 20),
    ("dpmpp_2m_karras", DPMSolverMultistepScheduler,
     dict(prediction_type="v_prediction", timestep_spacing="leading", use_karras_sigmas=True,
          algorithm_type="dpmsolver++", solver_order=2), 10),
]


def main():
    torch.manual_seed(0)
    init = torch.randn(1, 4, 2, 2, dtype=torch.float64)
    out = {"diffusers": diffusers.__version__, "init": init.flatten().tolist(), "shape": [1, 4, 2, 2], "cases": []}
    for name, cls, extra, steps in CASES:
        cfg = dict(BASE, **extra)
        accepted = inspect.signature(cls.__init__).parameters
        sched = cls(**{k: v for k, v in cfg.items() if k in accepted})
        sched.set_timesteps(steps)
        x = init.to(torch.float32) * sched.init_noise_sigma
        trace = []
        for t in sched.timesteps:
            inp = sched.scale_model_input(x, t)
            model_out = 0.3 * inp + float(t) / 100000.0
            x = sched.step(model_out, t, x).prev_sample
            trace.append(x.flatten().tolist())
        out["cases"].append({
            "scheduler": name, "config": cfg, "steps": steps,
            "timesteps": [float(t) for t in sched.timesteps],
            "init_noise_sigma": float(sched.init_noise_sigma),
            "latents": trace,
        })
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scheduler_reference.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
