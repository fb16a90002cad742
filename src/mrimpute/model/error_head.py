"""The learnt uncertainty: per output, a head that reads the fused latent and predicts the synthesis's absolute
error there (trained with every other part frozen; `synth --uncertainty` then maps it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .losses import LossTerms
from .network import SynthesisNet


class ErrorHeadLoss(nn.Module):
    """Mean absolute difference between each error head's map and the absolute error of its (frozen) output
    decoded from the fused latent of the inputs other than that output (or `fused_inputs`, when given, without it)."""

    def __init__(self, model: SynthesisNet, terms: LossTerms = LossTerms()) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                fused_inputs: list[str] | None = None,
                c1_outputs: dict[str, list[str]] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.no_grad():
            latents = self.model.encode(images)
        total, count = next(iter(latents.values())).new_zeros(()), 0
        for output, target in targets.items():
            if output not in self.model.config.error_heads:
                continue
            chosen = [m for m in (fused_inputs or list(latents)) if m != output]
            subset = [latents[m] for m in chosen or [m for m in latents if m != output] or list(latents)]
            with torch.no_grad():
                error = (self.model.decode_fused(subset, output) - target).abs()
            total = total + F.l1_loss(self.model.expected_error(subset, output), error)
            count += 1
        total = total / max(count, 1)
        value = float(total.detach())
        return total, {"c1": 0.0, "c2": 0.0, "c3": value, "total": value}
