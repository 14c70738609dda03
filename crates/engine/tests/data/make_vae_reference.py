#!/usr/bin/env python3
"""Writes tiny-vae/: a tiny random AutoencoderKL (3 levels, sample_size 32, so a tile is 8
latent cells) with one latent of 20×28 cells and diffusers' decodes of it, plain and tiled
(`enable_tiling`), and one 72×88 image with diffusers' encodes of it (the posterior's mean and
std, and a sample from given noise), plain and tiled, for tests/vae.rs.

Run with diffusers installed (recipe in crates/engine/benches/diffusers_reference.py):
    python crates/engine/tests/data/make_vae_reference.py
"""
import json
import os

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny-vae")


def main():
    torch.manual_seed(0)
    config = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 16),
                  down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                  layers_per_block=1, norm_num_groups=4, sample_size=32)
    vae = AutoencoderKL(**config).eval()
    # Random init leaves some layers at zero (norm shifts): perturb all, so every weight matters.
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    os.makedirs(HERE, exist_ok=True)
    vae.save_pretrained(HERE, safe_serialization=True)
    latents = torch.randn(1, 4, 20, 28)
    image = torch.rand(1, 3, 72, 88) * 2 - 1
    sample_noise = torch.randn(1, 4, 18, 22)
    with torch.inference_mode():
        plain = vae.decode(latents).sample
        posterior = vae.encode(image).latent_dist
        vae.enable_tiling()
        tiled = vae.decode(latents).sample
        tiled_posterior = vae.encode(image).latent_dist
    out = {"latents": latents, "plain": plain, "tiled": tiled, "image": image, "sample_noise": sample_noise,
           "mean": posterior.mean, "std": posterior.std, "sample": posterior.mean + posterior.std * sample_noise,
           "tiled_mean": tiled_posterior.mean, "tiled_std": tiled_posterior.std}
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(HERE, "reference.safetensors"))
    print("plain vs tiled max diff", (plain - tiled).abs().max().item(),
          "encode", (posterior.mean - tiled_posterior.mean).abs().max().item())


if __name__ == "__main__":
    main()
