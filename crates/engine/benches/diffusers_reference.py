#!/usr/bin/env python3
"""The diffusers side of the SD 1.5 benchmark: the same shapes, random weights, the same timings.

Recipe (CPU): python3 -m venv .venv-ref && .venv-ref/bin/pip install torch diffusers==0.42.1 transformers accelerate
Then: .venv-ref/bin/python crates/engine/benches/diffusers_reference.py [--device cpu|cuda] [--steps N] [--sdxl] [--json FILE]
End to end: --write-model DIR writes a full-size SD 1.5 diffusers folder with random weights (the
engine's built-in SD 1.5 configs), and --end-to-end DIR loads it with StableDiffusionPipeline and
makes one 512² image in --steps steps, reporting the whole process's wall time and peak RSS.
"""
import time

PROCESS_START = time.perf_counter()

import argparse  # noqa: E402  (imports are part of the timed end-to-end run)
import json  # noqa: E402
import pathlib  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402

import torch  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

CONFIGS = pathlib.Path(__file__).parent.parent / "configs"


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


def write_model(out):
    """A full-size SD 1.5 folder with random weights, from the engine's built-in configs."""
    out = pathlib.Path(out)
    if (out / "model_index.json").exists():
        return
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(CONFIGS / "sd15", tmp)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(CONFIGS / "clip-bpe" / name, tmp / "tokenizer" / name)
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(json.loads((tmp / "unet/config.json").read_text()))
    unet.save_pretrained(tmp / "unet", safe_serialization=True)
    del unet
    vae = AutoencoderKL.from_config(json.loads((tmp / "vae/config.json").read_text()))
    vae.save_pretrained(tmp / "vae", safe_serialization=True)
    del vae
    clip = CLIPTextModel(CLIPTextConfig.from_pretrained(tmp / "text_encoder"))
    clip.save_pretrained(tmp / "text_encoder", safe_serialization=True)
    index = {
        "_class_name": "StableDiffusionPipeline",
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (tmp / "model_index.json").write_text(json.dumps(index, indent=2))
    tmp.rename(out)


def end_to_end(folder, steps, device, json_path):
    """Load the folder and make one 512² image, as a user of diffusers would."""
    from diffusers import StableDiffusionPipeline

    dtype = torch.float32 if device == "cpu" else torch.float16
    pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=dtype, safety_checker=None,
                                                   feature_extractor=None, requires_safety_checker=False)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    pipe("a lighthouse on a cliff at dawn", num_inference_steps=steps, guidance_scale=7.5,
         width=512, height=512, generator=torch.Generator(device).manual_seed(1))
    sync()
    report = {
        "implementation": f"diffusers {__import__('diffusers').__version__} / torch {torch.__version__}",
        "end_to_end_s": time.perf_counter() - PROCESS_START,
        "end_to_end_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(report, indent=2))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--sdxl", action="store_true", help="also time the SDXL base UNet step")
    p.add_argument("--write-model", metavar="DIR", help="write a random full-size SD 1.5 folder")
    p.add_argument("--end-to-end", metavar="DIR", help="time loading DIR and one 512² image")
    p.add_argument("--json")
    a = p.parse_args()
    if a.write_model:
        write_model(a.write_model)
        return
    if a.end_to_end:
        end_to_end(a.end_to_end, a.steps, a.device, a.json)
        return
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
    with torch.inference_mode():
        big = torch.randn(1, 4, 128, 128, device=dev, dtype=dtype)
        decode_1024 = timed(1, lambda: vae.decode(big).sample)
    sdxl_step = sdxl_params = None
    if a.sdxl:
        del clip, unet, vae
        # The same config file the engine ships for SDXL single files.
        config = json.loads((pathlib.Path(__file__).parent.parent / "configs/sdxl/unet/config.json").read_text())
        xl = UNet2DConditionModel.from_config(config).to(dev, dtype).eval()
        sdxl_params = sum(p.numel() for p in xl.parameters())
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
        "vae_decode_1024_s": decode_1024,
        "unet_step_sdxl_batch2_128x128_s": sdxl_step,
        "unet_sdxl_params": sdxl_params,
        "peak_rss_mib": peak,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(report, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f)


if __name__ == "__main__":
    main()
