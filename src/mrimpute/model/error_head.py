"""The learnt uncertainty: per output, a head that reads the fused latent and predicts the synthesis's absolute
error there (trained with every other part frozen; `synth --uncertainty` then maps it).

The head outputs s, the log of the expected absolute error b = exp(s) (positive, and never stuck: the first form's
ReLU output could fall to 0 everywhere and stop learning). Two fits (`train-uncertainty --error-loss`):
- "l1": |exp(s) - |e||, whose minimiser is the conditional median of |e|;
- "laplace": the negative log-likelihood |e| exp(-s) + s of a Laplace distribution of scale b (the heteroscedastic
  regression of Kendall & Gal, NeurIPS 2017), whose minimiser is the conditional mean of |e|.
On the split's validation subjects (epoch-165 checkpoint of the default-v2 run) the median ranked the error better."""

from __future__ import annotations

import torch
from torch import nn

from .losses import LossTerms
from .network import ERROR_LOG_RANGE, SynthesisNet

ERROR_LOSSES = ("l1", "laplace")


def laplace_nll(log_scale: torch.Tensor, error: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood (less log 2) of errors under Laplace distributions of scale exp(log_scale)."""
    log_scale = log_scale.clamp(*ERROR_LOG_RANGE)
    return (error.abs() * torch.exp(-log_scale) + log_scale).mean()


def log_l1(log_scale: torch.Tensor, error: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between exp(log_scale) and the absolute errors."""
    return (log_scale.clamp(*ERROR_LOG_RANGE).exp() - error.abs()).abs().mean()


class ErrorHeadLoss(nn.Module):
    """The fit (l1 or laplace) of each error head to the absolute error of its (frozen) output decoded from the
    fused latent of the inputs other than that output (or `fused_inputs`, when given, without it)."""

    def __init__(self, model: SynthesisNet, terms: LossTerms = LossTerms(), error_loss: str = "l1") -> None:
        super().__init__()
        if error_loss not in ERROR_LOSSES:
            raise ValueError(f"unknown error loss '{error_loss}': expected {' or '.join(ERROR_LOSSES)}")
        self.model, self.fit = model, laplace_nll if error_loss == "laplace" else log_l1

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
            total = total + self.fit(self.model.error_head_output(subset, output), error)
            count += 1
        total = total / max(count, 1)
        value = float(total.detach())
        return total, {"c1": 0.0, "c2": 0.0, "c3": value, "total": value}
