"""Chartsias et al. 2018: one U-Net-like encoder per input, a fused latent image, one shallow decoder per output.

The layers are described once (model/layers.py); each encoder and decoder walks its description in one of three
forms: the plain reference (model/reference.py, after use_reference_layers), the autograd form (training) and the
inference form (no autograd), both in model/fast_paths.py.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .fast_paths import autograd_forward, inference_forward
from .fusion import Fusion, fusion_named
from .layers import Layers, build_modules, decoder_layers, network_layers, receptive_radius
from .reference import reference_forward

# How far an output pixel sees: the encoder 27 pixels to each side (at the worst phase of its two 2x2 poolings),
# the decoder 4 more. A slice cropped to the brain's box grown by this margin, with its corner on the poolings'
# grid (a multiple of 4 from the slice's corner), gives the brain the values the whole slice gives it.
_ENCODER, _DECODER = network_layers(ModelConfig(inputs=["t1"], outputs=["t1"]))
RECEPTIVE_RADIUS = receptive_radius(_ENCODER, _DECODER)  # 31
POOLING_GRID = 2 ** _ENCODER.pools  # 4
HEAD_BIAS = 0.5  # the decoders' initial output bias
ERROR_LOG_START = -3.0  # an error head's initial output: log of an expected |error| of 0.05 (brain-mean units)
ERROR_LOG_RANGE = (-12.0, 4.0)  # the log-scale an error head's output is clamped to before exp


class LayerStack(nn.Module):
    """A network built from a layer description: one nn.Sequential per named step (state-dict keys
    `<step>.<index>.weight`), run by walking the description in the reference, autograd or inference form."""

    reference = False  # True: the plain layers (see use_reference_layers)

    def __init__(self, layers: Layers) -> None:
        super().__init__()
        self.layers = layers
        for name, module in build_modules(layers).items():
            self.add_module(name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = 2 ** self.layers.pools
        if x.shape[-1] % grid or x.shape[-2] % grid:
            raise ValueError(f"slice size {tuple(x.shape[-2:])} is not a multiple of {grid}")
        if self.reference:
            return reference_forward(self, self.layers, x)
        forward = autograd_forward if torch.is_grad_enabled() else inference_forward
        return forward(self, self.layers, x)


class Encoder(LayerStack):
    """conv 32,32 | pool | 64,64 | pool | 128,128 | up, conv 64, skip, 64,64 | up, conv 32, skip, 32,32 | conv L
    at width 1 (layers.encoder_layers; LeakyReLU)."""


class Decoder(LayerStack):
    """conv 32,32 | concat its input | conv 32,32 | concat | 1x1 conv to one channel (layers.decoder_layers; ReLU)."""

    def __init__(self, layers: Layers) -> None:
        super().__init__(layers)
        # the output ReLU starts inside its active range (images are brain-mean normalised): with a bias near 0 a
        # few early steps can push every output below 0, where no gradient reaches the decoder again
        nn.init.constant_(getattr(self, layers.steps[-1].name)[0].bias, HEAD_BIAS)


class ErrorHead(LayerStack):
    """A decoder without the output ReLU: the log of the expected absolute error of one output (it can neither go
    negative nor stop learning, as a ReLU output at 0 does)."""

    def __init__(self, layers: Layers) -> None:
        super().__init__(layers)
        nn.init.constant_(getattr(self, layers.steps[-1].name)[0].bias, ERROR_LOG_START)


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
        if isinstance(module, (LayerStack, SynthesisNet)):
            module.reference = enabled
    return model


class SynthesisNet(nn.Module):
    """The multi-input, multi-output synthesis network; any subset of its inputs works at inference."""

    reference = False  # True: stacked fusion (see use_reference_layers)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        encoder, decoder = network_layers(config)
        self.encoders = nn.ModuleDict({m: Encoder(encoder) for m in config.inputs})
        self.decoders = nn.ModuleDict({m: Decoder(decoder) for m in config.outputs})
        if self.fusion.learnt:  # e.g. mean-max: per latent channel, the logit of max's share (0: halfway to the mean)
            self.fusion_mix = nn.Parameter(self.fusion.initial_params(config.latent))
        if config.error_heads:  # per output, a decoder of the fused latent to the expected absolute error
            self.error_heads = nn.ModuleDict({m: self._error_head(decoder) for m in config.error_heads})

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

    def _error_head(self, decoder: Layers) -> nn.Module:
        if self.config.error_head_form == "relu":  # the first form: the decoder itself
            return Decoder(decoder)
        return ErrorHead(decoder_layers(self.config.latent, self.config.width, bounded=False))

    def error_head_output(self, latents: list[torch.Tensor], output: str) -> torch.Tensor:
        """What `output`'s error head gives for the fusion of the given latents (its form: config.error_head_form)."""
        return self.error_heads[output](self.fuse(latents))

    def expected_error(self, latents: list[torch.Tensor], output: str) -> torch.Tensor:
        """The learnt head's expected absolute error of `output` decoded from the fusion of the given latents."""
        raw = self.error_head_output(latents, output)
        return raw.clamp(*ERROR_LOG_RANGE).exp() if self.config.error_head_form == "log" else raw

    def forward(self, images: dict[str, torch.Tensor], outputs: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Synthesise each requested output (default: all) from whichever inputs are given."""
        if not images:
            raise ValueError("at least one input is needed")
        latents = list(self.encode(images).values())
        return {m: self.decode_fused(latents, m) for m in (outputs or self.config.outputs)}
