"""The learnt uncertainty: per output, a head that reads the fused latent and predicts the synthesis's absolute
error there (trained with every other part frozen; `synth --uncertainty` then maps it).

The head outputs s = log b, the scale of a Laplace distribution of the error e, and is trained by its negative
log-likelihood |e| exp(-s) + s (the heteroscedastic regression of Kendall & Gal, NeurIPS 2017): its minimiser is
b = E[|e| | input], the conditional mean of the absolute error. (An L1 fit of |e| itself, the first form, learns the
conditional median, which is close to 0 nearly everywhere and ranks the error poorly; its ReLU output could die.)"""

from __future__ import annotations

import torch
from torch import nn

from .losses import LossTerms
from .network import ERROR_LOG_RANGE, SynthesisNet


def laplace_nll(log_scale: torch.Tensor, error: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood (less log 2) of errors under Laplace distributions of scale exp(log_scale)."""
    log_scale = log_scale.clamp(*ERROR_LOG_RANGE)
    return (error.abs() * torch.exp(-log_scale) + log_scale).mean()


class ErrorHeadLoss(nn.Module):
    """Mean Laplace negative log-likelihood, under each error head's scale, of the absolute error of its (frozen)
    output decoded from the fused latent of the inputs other than that output (or `fused_inputs`, when given,
    without it)."""

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
            total = total + laplace_nll(self.model.error_head_output(subset, output), error)
            count += 1
        total = total / max(count, 1)
        value = float(total.detach())
        return total, {"c1": 0.0, "c2": 0.0, "c3": value, "total": value}
