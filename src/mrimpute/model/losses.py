"""The paper's three-part cost: c1 (each latent decoded), c2 (latent variance), c3 (fused latent decoded)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .network import SynthesisNet


@dataclass(frozen=True)
class LossTerms:
    """Which cost components are switched on (ablations switch them off)."""

    c1: bool = True
    c2: bool = True
    c3: bool = True


def mae(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over every pixel of the batch."""
    return (prediction - target).abs().mean()


def latent_variance(latents: list[torch.Tensor]) -> torch.Tensor:
    """c2: the pixel-wise variance between the latents, averaged over pixels and channels."""
    if len(latents) < 2:
        return latents[0].new_zeros(())
    return torch.stack(latents, dim=0).var(dim=0, unbiased=False).mean()


def synthesis_loss(
    model: SynthesisNet,
    images: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    terms: LossTerms = LossTerms(),
    fused_inputs: list[str] | None = None,
    c1_outputs: dict[str, list[str]] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total cost and its parts.

    fused_inputs picks the inputs fused for c3 (all by default). c1_outputs maps each input to the outputs its
    single latent is decoded to (all by default); a random one per step gives an unbiased, cheaper estimate of c1.
    """
    latents = model.encode(images)
    names = list(latents)
    fused_names = fused_inputs or names
    zero = next(iter(latents.values())).new_zeros(())
    c1, c3 = zero, zero
    for output, target in targets.items():
        decoder = model.decoders[output]
        if terms.c1:
            sources = [m for m in names if c1_outputs is None or output in c1_outputs[m]]
            if sources:
                weight = {m: 1.0 if c1_outputs is None else len(targets) / len(c1_outputs[m]) for m in sources}
                singles = torch.cat([model.fuse([latents[m]]) for m in sources], dim=0)
                decoded = decoder(singles).chunk(len(sources), dim=0)
                c1 = c1 + sum(weight[m] * mae(d, target) for m, d in zip(sources, decoded))
        if terms.c3:
            c3 = c3 + mae(model.decode_fused([latents[m] for m in fused_names], output), target)
    n_out = len(targets)
    c1, c3 = c1 / n_out, c3 / n_out
    c2 = latent_variance(list(latents.values())) if terms.c2 else zero
    total = c1 + c2 + c3
    return total, {"c1": float(c1.detach()), "c2": float(c2.detach()), "c3": float(c3.detach()), "total": float(total.detach())}
