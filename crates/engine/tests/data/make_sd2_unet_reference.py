#!/usr/bin/env python3
"""Writes tiny-sd2-unet/: a tiny random SD 2.x-style UNet (linear projections, per-block head
counts, 3 blocks, odd latent size) and a tiny CLIP text encoder with the exact GELU (as SD 2.x
uses), each with one input and the reference output, for tests/sd2_unet.rs.

Run with diffusers installed (recipe in crates/engine/benches/diffusers_reference.py):
    python crates/engine/tests/data/make_sd2_unet_reference.py
"""
import json
import os

import torch
from diffusers import UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel
from safetensors.torch import save_file

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny-sd2-unet")


def main():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32, 32), attention_head_dim=(2, 4, 4), cross_attention_dim=24,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=8, use_linear_projection=True, upcast_attention=True,
    ).eval()
    with torch.no_grad():
        for name, p in unet.named_parameters():
            # Perturb norms and biases away from 1/0 so a swapped affine shows.
            p.add_(torch.randn_like(p) * 0.05)
    os.makedirs(HERE, exist_ok=True)
    unet.save_config(HERE)
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, os.path.join(HERE, "diffusion_pytorch_model.safetensors"))
    sample = torch.randn(2, 4, 6, 10)  # non-square, and 6 is not a multiple of 4: upsample sizes matter
    context = torch.randn(2, 77, 24)
    with torch.no_grad():
        out = unet(sample, 421, context).sample
    save_file({"sample": sample, "context": context, "out": out}, os.path.join(HERE, "io.safetensors"))
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=100, hidden_size=16, intermediate_size=40, num_attention_heads=2,
                                        num_hidden_layers=2, max_position_embeddings=77, hidden_act="gelu")).eval()
    with torch.no_grad():
        for p in clip.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    clip.config.to_json_file(os.path.join(HERE, "clip_config.json"))
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, os.path.join(HERE, "clip.safetensors"))
    ids = torch.randint(0, 100, (1, 77))
    with torch.no_grad():
        hidden = clip(ids).last_hidden_state
    save_file({"ids": ids.to(torch.int64), "hidden": hidden}, os.path.join(HERE, "clip_io.safetensors"))
    print(f"wrote {HERE}", sum(p.numel() for p in unet.parameters()), "UNet parameters")


if __name__ == "__main__":
    main()
