"""The fusions of the single-input latents, one class each (Chartsias et al. 2018, Sec. II-B and the ablations).

Adding a fusion is one class here, decorated with @register: ModelConfig (name and latent-size checks, the
encoders' channels), SynthesisNet (learnt parameters, stacked or pairwise form, per-output decoding), the loss,
`train --fusion` and `synth --explain` read what the class says.

The registry is config.FUSIONS (re-exported here): the configuration layer sits below the model and may not import
it, so the classes fill the dict the configuration reads. Importing mrimpute.model (any of its modules) fills it.
"""

from __future__ import annotations

import functools

import torch

from ..config import FUSIONS


class Fusion:
    """One way to combine the latents of whichever inputs are given into one latent of `latent` channels."""

    name: str = ""
    learnt: bool = False  # has learnt parameters: a vector SynthesisNet keeps as `fusion_mix`
    per_output: bool = False  # decode each latent on its own and average the images (no fused latent to decode)
    picks_winner: bool = False  # one input gives each latent channel at each pixel (synth --explain can show it)

    def encoder_channels(self, latent: int) -> int:
        """Channels each encoder produces for a fused latent of `latent` channels."""
        return latent

    def check(self, latent: int) -> None:
        """Raise ValueError for a latent size this fusion cannot make."""

    def initial_params(self, latent: int) -> torch.Tensor:
        """The learnt parameters' starting values (learnt fusions only)."""
        raise NotImplementedError(f"{self.name} fusion has no learnt parameters")

    def fuse_stacked(self, latents: list[torch.Tensor], params: torch.Tensor | None = None) -> torch.Tensor:
        """The plain form: stack the latents and reduce (the reference the fast form is checked against)."""
        raise NotImplementedError

    def fuse(self, latents: list[torch.Tensor], params: torch.Tensor | None = None) -> torch.Tensor:
        """The fast form (default: the plain one); must give what fuse_stacked gives."""
        return self.fuse_stacked(latents, params)


def register(cls: type[Fusion]) -> type[Fusion]:
    """Class decorator: put one instance of a fusion in the registry under its name."""
    if not cls.name or cls.name in FUSIONS:
        raise ValueError(f"fusion name '{cls.name}' is empty or taken")
    FUSIONS[cls.name] = cls()
    return cls


def fusion_named(name: str) -> Fusion:
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion '{name}'")
    return FUSIONS[name]


# Pairwise, without a stacked copy (a max tie, which real-valued latents do not have, splits its gradient pairwise
# rather than evenly); one latent is its own max or mean.

@register
class MaxFusion(Fusion):
    """Pixel-wise maximum (the paper's choice)."""

    name = "max"
    picks_winner = True

    def fuse_stacked(self, latents: list[torch.Tensor], params: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack(latents, dim=0).amax(dim=0)

    def fuse(self, latents: list[torch.Tensor], params: torch.Tensor | None = None) -> torch.Tensor:
        return latents[0] if len(latents) == 1 else functools.reduce(torch.maximum, latents)


@register
class MeanFusion(Fusion):
    """Pixel-wise mean."""

    name = "mean"

    def fuse_stacked(self, latents: list[torch.Tensor], params: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack(latents, dim=0).mean(dim=0)

    def fuse(self, latents: list[torch.Tensor], params: torch.Tensor | None = None) -> torch.Tensor:
        return latents[0] if len(latents) == 1 else functools.reduce(torch.add, latents) / len(latents)


@register
class HemisFusion(Fusion):
    """HeMIS (Havaei et al. 2016): the mean and the variance of the latents, concatenated; each encoder gives half."""

    name = "hemis"

    def encoder_channels(self, latent: int) -> int:
        return latent // 2

    def check(self, latent: int) -> None:
        if latent % 2:
            raise ValueError("hemis fusion needs an even latent size (mean and variance halves)")

    def fuse_stacked(self, latents: list[torch.Tensor], params: torch.Tensor | None = None) -> torch.Tensor:
        stacked = torch.stack(latents, dim=0)
        return torch.cat([stacked.mean(dim=0), stacked.var(dim=0, unbiased=False)], dim=1)


@register
class OutputMeanFusion(MeanFusion):
    """Each latent decoded on its own, the images averaged (its fused latent, for the error heads, is the mean)."""

    name = "output-mean"
    per_output = True


@register
class MeanMaxFusion(Fusion):
    """Per latent channel c, sigmoid(mix[c]) * max + (1 - sigmoid(mix[c])) * mean: the paper's suggested
    interpolation, learned (mix starts at 0: halfway)."""

    name = "mean-max"
    learnt = True

    def initial_params(self, latent: int) -> torch.Tensor:
        return torch.zeros(latent)

    @staticmethod
    def _mix(maximum: torch.Tensor, mean: torch.Tensor, mix: torch.Tensor | None) -> torch.Tensor:
        if mix is None:
            raise ValueError("mean-max fusion needs its learned mixing weights")
        weight = torch.sigmoid(mix).view(1, -1, 1, 1).to(maximum.dtype)
        return mean + weight * (maximum - mean)

    def fuse_stacked(self, latents: list[torch.Tensor], params: torch.Tensor | None = None) -> torch.Tensor:
        stacked = torch.stack(latents, dim=0)
        return self._mix(stacked.amax(dim=0), stacked.mean(dim=0), params)

    def fuse(self, latents: list[torch.Tensor], params: torch.Tensor | None = None) -> torch.Tensor:
        if len(latents) == 1:
            return latents[0]
        mean = functools.reduce(torch.add, latents) / len(latents)
        return self._mix(functools.reduce(torch.maximum, latents), mean, params)
