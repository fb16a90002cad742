"""The paper's three-part cost: c1 (each latent decoded), c2 (latent variance), c3 (fused latent decoded)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .network import SynthesisNet


@dataclass(frozen=True)
class LossTerms:
    """Which cost components are switched on (ablations switch them off)."""

    c1: bool = True
    c2: bool = True
    c3: bool = True
    ssim: float = 0.0  # weight of (1 - SSIM) beside the MAE inside c1 and c3 (0: the paper's MAE alone)
    mse: float = 0.0  # weight of the mean squared error beside the MAE inside c1 and c3 (what PSNR scores)


def mae(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over every pixel of the batch."""
    return F.l1_loss(prediction, target)


SSIM_WINDOW = 7  # scikit-image's default window (uniform)
SSIM_RANGE = 2.0  # data range in brain-mean units (the brain's bright tissue reaches about 2)


def ssim(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean structural similarity of two image batches (N, 1, H, W): uniform 7 x 7 windows, no padding."""
    c1, c2 = (0.01 * SSIM_RANGE) ** 2, (0.03 * SSIM_RANGE) ** 2
    pool = functools.partial(F.avg_pool2d, kernel_size=SSIM_WINDOW, stride=1)
    x, y = prediction.float(), target.float()
    mx, my = pool(x), pool(y)
    vx, vy, cxy = pool(x * x) - mx * mx, pool(y * y) - my * my, pool(x * y) - mx * my
    return (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))).mean()


def pixel_loss(prediction: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.0,
               mse_weight: float = 0.0) -> torch.Tensor:
    """The per-image term of c1 and c3: MAE, plus ssim_weight * (1 - SSIM) and mse_weight * MSE when asked for
    (the MAE alone fits the conditional median, the squared error the mean, which PSNR rewards)."""
    loss = mae(prediction, target)
    if ssim_weight:
        loss = loss + ssim_weight * (1.0 - ssim(prediction, target))
    if mse_weight:
        loss = loss + mse_weight * F.mse_loss(prediction, target)
    return loss


def latent_variance(latents: list[torch.Tensor]) -> torch.Tensor:
    """c2: the pixel-wise variance between the latents, averaged over pixels and channels."""
    if len(latents) < 2:
        return latents[0].new_zeros(())
    mean = functools.reduce(torch.add, latents) / len(latents)
    return functools.reduce(torch.add, [(z - mean).square().mean() for z in latents]) / len(latents)


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
    Each output's decoder runs once per step, on the single latents (c1) and the fused latent (c3) together.
    """
    latents = model.encode(images)
    names = list(latents)
    fused_names = fused_inputs or names
    zero = next(iter(latents.values())).new_zeros(())
    fused = model.fuse([latents[m] for m in fused_names]) if terms.c3 and not model.fusion.per_output else None
    c1, c3 = zero, zero
    for output, target in targets.items():
        decoder = model.decoders[output]
        sources = [m for m in names if c1_outputs is None or output in c1_outputs[m]] if terms.c1 else []
        batch = [model.fuse([latents[m]]) for m in sources] + ([fused] if fused is not None else [])
        decoded = (decoder(torch.cat(batch, dim=0)).chunk(len(batch), dim=0) if len(batch) > 1
                   else [decoder(batch[0])] if batch else [])
        for m, image in zip(sources, decoded):
            weight = 1.0 if c1_outputs is None else len(targets) / len(c1_outputs[m])
            c1 = c1 + weight * pixel_loss(image, target, terms.ssim, terms.mse)
        if terms.c3:
            image = decoded[-1] if fused is not None else model.decode_fused([latents[m] for m in fused_names], output)
            c3 = c3 + pixel_loss(image, target, terms.ssim, terms.mse)
    n_out = len(targets)
    c1, c3 = c1 / n_out, c3 / n_out
    c2 = latent_variance(list(latents.values())) if terms.c2 else zero
    total = c1 + c2 + c3
    return total, {"c1": float(c1.detach()), "c2": float(c2.detach()), "c3": float(c3.detach()),
                   "total": float(total.detach())}


class SynthesisLoss(nn.Module):
    """synthesis_loss as a module around the network: what DistributedDataParallel wraps (it synchronises the
    gradients of the parameters used inside its forward)."""

    def __init__(self, model: SynthesisNet, terms: LossTerms = LossTerms()) -> None:
        super().__init__()
        self.model = model
        self.terms = terms

    def forward(self, images: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                fused_inputs: list[str] | None = None,
                c1_outputs: dict[str, list[str]] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        return synthesis_loss(self.model, images, targets, self.terms, fused_inputs, c1_outputs)
