#!/usr/bin/env python3
"""Writes tiny-esrgan/: two tiny random RRDBNets (Real-ESRGAN's generator, basicsr's layout), a
×4 one (`x4.safetensors`, and the same weights as a PyTorch `x4.pth` under `params_ema`, as
Real-ESRGAN ships them) and a ×2 one (`x2.safetensors`: pixel-unshuffled input), with one random
image and each net's output on it (`reference.safetensors`), for tests/upscaler.rs.

The network is basicsr's `RRDBNet` (basicsr/archs/rrdbnet_arch.py), written out here so no
basicsr install is needed. Run with torch installed:
    python crates/engine/tests/data/make_esrgan_reference.py
"""
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny-esrgan")


class ResidualDenseBlock(nn.Module):
    def __init__(self, num_feat, num_grow_ch):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x):
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, num_feat, num_grow_ch):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x):
        out = self.rdb3(self.rdb2(self.rdb1(x)))
        return out * 0.2 + x


def pixel_unshuffle(x, scale):
    b, c, hh, hw = x.size()
    h, w = hh // scale, hw // scale
    x_view = x.view(b, c, h, scale, w, scale)
    return x_view.permute(0, 1, 3, 5, 2, 4).reshape(b, c * scale * scale, h, w)


class RRDBNet(nn.Module):
    def __init__(self, scale, num_feat, num_block, num_grow_ch):
        super().__init__()
        self.scale = scale
        num_in_ch = 3 * (4 if scale == 2 else 16 if scale == 1 else 1)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x):
        if self.scale == 2:
            feat = pixel_unshuffle(x, scale=2)
        elif self.scale == 1:
            feat = pixel_unshuffle(x, scale=4)
        else:
            feat = x
        feat = self.conv_first(feat)
        body_feat = self.conv_body(self.body(feat))
        feat = feat + body_feat
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode='nearest')))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode='nearest')))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


def main():
    torch.manual_seed(0)
    os.makedirs(HERE, exist_ok=True)
    image = torch.rand(1, 3, 20, 24)
    out = {"image": image}
    for name, scale, blocks in [("x4", 4, 2), ("x2", 2, 1)]:
        net = RRDBNet(scale, num_feat=16, num_block=blocks, num_grow_ch=8).eval()
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn_like(p) * 0.1)
            out[name] = net(image)
        state = {k: v.contiguous() for k, v in net.state_dict().items()}
        save_file(state, os.path.join(HERE, f"{name}.safetensors"))
        if name == "x4":
            torch.save({"params_ema": state}, os.path.join(HERE, "x4.pth"))
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(HERE, "reference.safetensors"))
    print({k: tuple(v.shape) for k, v in out.items()})


if __name__ == "__main__":
    main()
