#!/usr/bin/env python3
"""The diffusers side of the SD 1.5 benchmark: the same shapes, random weights, the same timings.

Recipe (CPU): python3 -m venv .venv-ref && .venv-ref/bin/pip install torch diffusers==0.42.1 transformers
Then: .venv-ref/bin/python crates/engine/benches/diffusers_reference.py [--device cpu|cuda] [--steps N] [--sdxl] [--json FILE]
"""
import argparse
import json
import pathlib
import resource
import time

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel


def timed(n, fn):
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return (time.perf_counter() - start) / n


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--sdxl", action="store_true", help="also time the SDXL base UNet step")
    p.add_argument("--json")
    a = p.parse_args()
    dev = torch.device(a.device)
    dtype = torch.float32 if dev.type == "cpu" else torch.float16
    torch.manual_seed(0)
    clip = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                        num_hidden_layers=12, max_position_embeddings=77, vocab_size=49408,
                                        hidden_act="quick_gelu")).to(dev, dtype).eval()
    unet = UNet2DConditionModel(
        block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8, cross_attention_dim=768,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        in_channels=4, out_channels=4, layers_per_block=2, norm_num_groups=32).to(dev, dtype).eval()
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        norm_num_groups=32).to(dev, dtype).eval()
    ids = torch.arange(77, device=dev).unsqueeze(0).repeat(2, 1)
    with torch.inference_mode():
        text = timed(a.steps, lambda: clip(ids).last_hidden_state)
        ctx = clip(ids).last_hidden_state
        lat = torch.randn(2, 4, 64, 64, device=dev, dtype=dtype)
        step = timed(a.steps, lambda: unet(lat, 500, ctx).sample)
        one = torch.randn(1, 4, 64, 64, device=dev, dtype=dtype)
        decode = timed(min(a.steps, 2), lambda: vae.decode(one).sample)
    # The SD 1.5 figures' peak, before the SDXL UNet (if asked for) raises it.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sdxl_step = None
    if a.sdxl:
        del clip, unet, vae
        # The same config file the engine ships for SDXL single files.
        config = json.loads((pathlib.Path(__file__).parent.parent / "configs/sdxl/unet/config.json").read_text())
        xl = UNet2DConditionModel.from_config(config).to(dev, dtype).eval()
        with torch.inference_mode():
            lat = torch.randn(2, 4, 128, 128, device=dev, dtype=dtype)
            ctx = torch.randn(2, 77, 2048, device=dev, dtype=dtype)
            added = {"text_embeds": torch.randn(2, 1280, device=dev, dtype=dtype),
                     "time_ids": torch.tensor([[1024, 1024, 0, 0, 1024, 1024]] * 2, device=dev, dtype=dtype)}
            sdxl_step = timed(a.steps, lambda: xl(lat, 500, ctx, added_cond_kwargs=added).sample)
    report = {
        "implementation": f"diffusers {__import__('diffusers').__version__} / torch {torch.__version__}",
        "device": a.device, "dtype": str(dtype).replace("torch.", ""),
        "text_encode_batch2_s": text, "unet_step_batch2_64x64_s": step, "vae_decode_512_s": decode,
        "unet_step_sdxl_batch2_128x128_s": sdxl_step,
        "peak_rss_mib": peak,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(report, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f)


if __name__ == "__main__":
    main()
