"""Chartsias et al. 2018: one U-Net-like encoder per input, a fused latent image, one shallow decoder per output."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .fast_ops import (
    activate_into,
    empty_padded,
    fill_border,
    interior,
    replicate_pad,
    upsampling_conv,
    upsampling_conv_phases,
)
from .fusion import Fusion, fusion_named

# How far an output pixel sees: the encoder 27 pixels to each side (at the worst phase of its two 2x2 poolings),
# the decoder 4 more. A slice cropped to the brain's box grown by this margin, with its corner on the poolings'
# grid (a multiple of 4 from the slice's corner), gives the brain the values the whole slice gives it.
RECEPTIVE_RADIUS = 31
POOLING_GRID = 4
HEAD_BIAS = 0.5  # the decoders' initial output bias


def _channels(base: int, width: float) -> int:
    return max(4, int(round(base * width)))


def _conv(in_ch: int, out_ch: int, kernel: int = 3) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, padding_mode="replicate" if kernel > 1 else "zeros")


def _apply_conv(layer: nn.Sequential, padded: torch.Tensor, index: int = 0) -> torch.Tensor:
    """The convolution at layer[index] applied without padding to an already padded input."""
    return F.conv2d(padded, layer[index].weight, layer[index].bias)


def _into(y: torch.Tensor, out: torch.Tensor | None = None, leaky: bool = True) -> torch.Tensor:
    """The activation of y written into out, or into a new padded buffer whose border is then filled."""
    if out is None:
        padded = empty_padded(y, y.shape[1], y.shape[2], y.shape[3])
        activate_into(y, interior(padded), leaky)
        return fill_border(padded)
    activate_into(y, out, leaky)
    return out


def _pixelwise(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A bias-free 1x1 convolution (weight: out x in channels) as one matrix product over the channels."""
    return torch.matmul(x.permute(0, 2, 3, 1), weight.t()).permute(0, 3, 1, 2)


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

    reference = False  # True: the plain layers (per-conv replicate padding, upsampling, concatenation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"slice size {tuple(x.shape[-2:])} is not a multiple of 4")
        if self.reference:
            return self._forward_reference(x)
        return self._forward_autograd(x) if torch.is_grad_enabled() else self._forward_inference(x)

    def _forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        skip1 = self.level1(x)
        skip2 = self.level2(self.pool(skip1))
        h = self.bottom(self.pool(skip2))
        h = self.merge2(torch.cat([self.up2(self.upsample(h)), skip2], dim=1))
        h = self.merge1(torch.cat([self.up1(self.upsample(h)), skip1], dim=1))
        return self.to_latent(h)

    def _forward_autograd(self, x: torch.Tensor) -> torch.Tensor:
        """The same function with explicit cheap padding and low-resolution upsampling convolutions."""
        def conv(layer: nn.Sequential, h: torch.Tensor, index: int = 0) -> torch.Tensor:
            return F.leaky_relu(F.conv2d(replicate_pad(h), layer[index].weight, layer[index].bias), 0.2, inplace=True)

        def up(layer: nn.Sequential, h: torch.Tensor) -> torch.Tensor:
            return F.leaky_relu(upsampling_conv(replicate_pad(h), layer[0].weight, layer[0].bias), 0.2, inplace=True)

        skip1 = conv(self.level1, conv(self.level1, x), 2)
        skip2 = conv(self.level2, conv(self.level2, F.max_pool2d(skip1, 2)), 2)
        h = conv(self.bottom, conv(self.bottom, F.max_pool2d(skip2, 2)), 2)
        h = conv(self.merge2, conv(self.merge2, torch.cat([up(self.up2, h), skip2], dim=1)), 2)
        h = conv(self.merge1, conv(self.merge1, torch.cat([up(self.up1, h), skip1], dim=1)), 2)
        return conv(self.to_latent, h)

    def _forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        """No autograd: each activation is written into the next convolution's padded input buffer (the skip
        connections and the upsampling convolutions straight into the merge buffers)."""
        def down(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """The next level's padded input, and the merge buffer holding the skip connection (second half)."""
            merge = empty_padded(y, 2 * y.shape[1], y.shape[2], y.shape[3])
            pooled = F.max_pool2d(y, 2)  # before the activation: max commutes with the (monotone) LeakyReLU
            _into(y, interior(merge)[:, y.shape[1]:])
            return _into(pooled), merge

        def up(layer: nn.Sequential, padded: torch.Tensor, merge: torch.Tensor) -> torch.Tensor:
            half = interior(merge)[:, : layer[0].out_channels]
            for (a, b), phase in upsampling_conv_phases(padded, layer[0].weight, layer[0].bias):
                _into(phase, half[:, :, a::2, b::2])
            return fill_border(merge)

        h, merge1 = down(_apply_conv(self.level1, _into(_apply_conv(self.level1, replicate_pad(x))), 2))
        h, merge2 = down(_apply_conv(self.level2, _into(_apply_conv(self.level2, h)), 2))
        h = _into(_apply_conv(self.bottom, _into(_apply_conv(self.bottom, h)), 2))
        h = _into(_apply_conv(self.merge2, _into(_apply_conv(self.merge2, up(self.up2, h, merge2))), 2))
        h = _into(_apply_conv(self.merge1, _into(_apply_conv(self.merge1, up(self.up1, h, merge1))), 2))
        return F.leaky_relu(_apply_conv(self.to_latent, h), 0.2, inplace=True)


class Decoder(nn.Module):
    """conv 32,32 | concat its input | conv 32,32 | concat | 1x1 conv to one channel, ReLU."""

    def __init__(self, latent: int, width: float) -> None:
        super().__init__()
        c = _channels(32, width)
        act = nn.ReLU()
        self.block1 = nn.Sequential(_conv(latent, c), act, _conv(c, c), act)
        self.block2 = nn.Sequential(_conv(c + latent, c), act, _conv(c, c), act)
        self.head = nn.Sequential(_conv(2 * c + latent, 1, kernel=1), nn.ReLU())
        # the output ReLU starts inside its active range (images are brain-mean normalised): with a bias near 0 a
        # few early steps can push every output below 0, where no gradient reaches the decoder again
        nn.init.constant_(self.head[0].bias, HEAD_BIAS)

    reference = False  # True: the plain layers

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.reference:
            return self._forward_reference(z)
        return self._forward_autograd(z) if torch.is_grad_enabled() else self._forward_inference(z)

    def _forward_reference(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.block1(z), z], dim=1)
        h = torch.cat([self.block2(h), h], dim=1)
        return self.head(h)

    def _forward_autograd(self, z: torch.Tensor) -> torch.Tensor:
        def conv(layer: nn.Sequential, h: torch.Tensor, index: int = 0) -> torch.Tensor:
            return F.relu(F.conv2d(replicate_pad(h), layer[index].weight, layer[index].bias), inplace=True)

        h = torch.cat([conv(self.block1, conv(self.block1, z), 2), z], dim=1)
        h = torch.cat([conv(self.block2, conv(self.block2, h), 2), h], dim=1)
        return self.head(h)

    def _forward_inference(self, z: torch.Tensor) -> torch.Tensor:
        """No autograd: block 1's output and z go into one padded buffer (block 2's input, no concatenation);
        the 1x1 head sums its parts' contributions instead of reading a concatenated copy."""
        c = self.block1[0].out_channels
        merged = empty_padded(z, c + z.shape[1], z.shape[2], z.shape[3])
        interior(merged)[:, c:] = z
        h = _into(_apply_conv(self.block1, replicate_pad(z)), leaky=False)
        _into(_apply_conv(self.block1, h, 2), interior(merged)[:, :c], leaky=False)
        h = _into(_apply_conv(self.block2, fill_border(merged)), leaky=False)
        top = torch.relu_(_apply_conv(self.block2, h, 2))
        weight, bias = self.head[0].weight[:, :, 0, 0], self.head[0].bias
        image = _pixelwise(top, weight[:, :c]) + interior(_pixelwise(merged, weight[:, c:]))
        return torch.relu_(image + bias.view(1, -1, 1, 1))


def fuse(latents: list[torch.Tensor], fusion: str, mix: torch.Tensor | None = None) -> torch.Tensor:
    """Combine single-input latents into one by the named fusion's fast form (see model/fusion.py); mix: its
    learnt parameters, if it has any."""
    return fusion_named(fusion).fuse(latents, mix)


def fuse_stacked(latents: list[torch.Tensor], fusion: str, mix: torch.Tensor | None = None) -> torch.Tensor:
    """The plain form of fuse: stack the latents and reduce (the reference path)."""
    return fusion_named(fusion).fuse_stacked(latents, mix)


def use_reference_layers(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch a network to (or back from) the plain layers: per-convolution replicate padding, nn.Upsample,
    concatenation and stacked fusion, the straightforward form the fast paths are checked and timed against."""
    for module in model.modules():
        if isinstance(module, (Encoder, Decoder, SynthesisNet)):
            module.reference = enabled
    return model


class SynthesisNet(nn.Module):
    """The multi-input, multi-output synthesis network; any subset of its inputs works at inference."""

    reference = False  # True: stacked fusion (see use_reference_layers)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        in_channels = 2 if config.lesion_channel else 1
        self.encoders = nn.ModuleDict({m: Encoder(in_channels, config.encoder_latent, config.width)
                                       for m in config.inputs})
        self.decoders = nn.ModuleDict({m: Decoder(config.latent, config.width) for m in config.outputs})
        if self.fusion.learnt:  # e.g. mean-max: per latent channel, the logit of max's share (0: halfway to the mean)
            self.fusion_mix = nn.Parameter(self.fusion.initial_params(config.latent))
        if config.error_heads:  # per output, a decoder of the fused latent to the expected absolute error
            self.error_heads = nn.ModuleDict({m: Decoder(config.latent, config.width) for m in config.error_heads})

    @property
    def fusion(self) -> Fusion:
        """The configured fusion (model/fusion.py)."""
        return fusion_named(self.config.fusion)

    def encode(self, images: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Latent image of each given input (N, C, H, W) -> (N, L, H, W); each encoder runs once."""
        return {m: self.encoders[m](x) for m, x in images.items()}

    def fuse(self, latents: list[torch.Tensor]) -> torch.Tensor:
        params = getattr(self, "fusion_mix", None)
        return self.fusion.fuse_stacked(latents, params) if self.reference else self.fusion.fuse(latents, params)

    def decode_fused(self, latents: list[torch.Tensor], output: str) -> torch.Tensor:
        """Decode the fusion of the given latents (a per-output fusion, output-mean, decodes each latent and
        averages the images)."""
        decoder = self.decoders[output]
        if self.fusion.per_output:
            return torch.stack([decoder(z) for z in latents], dim=0).mean(dim=0)
        return decoder(self.fuse(latents))

    def expected_error(self, latents: list[torch.Tensor], output: str) -> torch.Tensor:
        """The learnt head's expected absolute error of `output` decoded from the fusion of the given latents."""
        return self.error_heads[output](self.fuse(latents))

    def forward(self, images: dict[str, torch.Tensor], outputs: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Synthesise each requested output (default: all) from whichever inputs are given."""
        if not images:
            raise ValueError("at least one input is needed")
        latents = list(self.encode(images).values())
        return {m: self.decode_fused(latents, m) for m in (outputs or self.config.outputs)}
