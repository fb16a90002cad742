"""Chartsias et al. 2018: one U-Net-like encoder per input, a fused latent image, one shallow decoder per output."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig


def _channels(base: int, width: float) -> int:
    return max(4, int(round(base * width)))


def _conv(in_ch: int, out_ch: int, kernel: int = 3) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, padding_mode="replicate" if kernel > 1 else "zeros")


class Encoder(nn.Module):
    """conv 32,32 | pool | 64,64 | pool | 128,128 | up, conv 64, skip, 64,64 | up, conv 32, skip, 32,32 | conv L."""

    def __init__(self, in_channels: int, latent: int, width: float) -> None:
        super().__init__()
        c1, c2, c3 = (_channels(b, width) for b in (32, 64, 128))
        act = nn.LeakyReLU(0.2)
        self.level1 = nn.Sequential(_conv(in_channels, c1), act, _conv(c1, c1), act)
        self.level2 = nn.Sequential(_conv(c1, c2), act, _conv(c2, c2), act)
        self.bottom = nn.Sequential(_conv(c2, c3), act, _conv(c3, c3), act)
        self.up2 = nn.Sequential(_conv(c3, c2), act)
        self.merge2 = nn.Sequential(_conv(2 * c2, c2), act, _conv(c2, c2), act)
        self.up1 = nn.Sequential(_conv(c2, c1), act)
        self.merge1 = nn.Sequential(_conv(2 * c1, c1), act, _conv(c1, c1), act)
        self.to_latent = nn.Sequential(_conv(c1, latent), act)
        self.pool = nn.MaxPool2d(2)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip1 = self.level1(x)
        skip2 = self.level2(self.pool(skip1))
        h = self.bottom(self.pool(skip2))
        h = self.merge2(torch.cat([self.up2(self.upsample(h)), skip2], dim=1))
        h = self.merge1(torch.cat([self.up1(self.upsample(h)), skip1], dim=1))
        return self.to_latent(h)


class Decoder(nn.Module):
    """conv 32,32 | concat its input | conv 32,32 | concat | 1x1 conv to one channel, ReLU."""

    def __init__(self, latent: int, width: float) -> None:
        super().__init__()
        c = _channels(32, width)
        act = nn.ReLU()
        self.block1 = nn.Sequential(_conv(latent, c), act, _conv(c, c), act)
        self.block2 = nn.Sequential(_conv(c + latent, c), act, _conv(c, c), act)
        self.head = nn.Sequential(_conv(2 * c + latent, 1, kernel=1), nn.ReLU())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.block1(z), z], dim=1)
        h = torch.cat([self.block2(h), h], dim=1)
        return self.head(h)


def fuse(latents: list[torch.Tensor], fusion: str) -> torch.Tensor:
    """Combine single-input latents into one: pixel-wise max, mean, or HeMIS mean+variance."""
    stacked = torch.stack(latents, dim=0)
    if fusion == "max":
        return stacked.amax(dim=0)
    if fusion in ("mean", "output-mean"):
        return stacked.mean(dim=0)
    if fusion == "hemis":
        return torch.cat([stacked.mean(dim=0), stacked.var(dim=0, unbiased=False)], dim=1)
    raise ValueError(f"unknown fusion '{fusion}'")


class SynthesisNet(nn.Module):
    """The multi-input, multi-output synthesis network; any subset of its inputs works at inference."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        in_channels = 2 if config.lesion_channel else 1
        self.encoders = nn.ModuleDict({m: Encoder(in_channels, config.encoder_latent, config.width) for m in config.inputs})
        self.decoders = nn.ModuleDict({m: Decoder(config.latent, config.width) for m in config.outputs})

    def encode(self, images: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Latent image of each given input (N, C, H, W) -> (N, L, H, W); each encoder runs once."""
        return {m: self.encoders[m](x) for m, x in images.items()}

    def fuse(self, latents: list[torch.Tensor]) -> torch.Tensor:
        return fuse(latents, self.config.fusion)

    def decode_fused(self, latents: list[torch.Tensor], output: str) -> torch.Tensor:
        """Decode the fusion of the given latents (output-mean decodes each latent and averages the images)."""
        decoder = self.decoders[output]
        if self.config.fusion == "output-mean":
            return torch.stack([decoder(z) for z in latents], dim=0).mean(dim=0)
        return decoder(self.fuse(latents))

    def forward(self, images: dict[str, torch.Tensor], outputs: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Synthesise each requested output (default: all) from whichever inputs are given."""
        if not images:
            raise ValueError("at least one input is needed")
        latents = list(self.encode(images).values())
        return {m: self.decode_fused(latents, m) for m in (outputs or self.config.outputs)}
