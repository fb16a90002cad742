"""Per-pixel maps read from the latents of a batch of slices: the spread of the decodings (uncertainty) and which
input wins the max fusion (the paper's Fig. 7)."""

from __future__ import annotations

import torch

from ..errors import CheckpointError
from ..model.network import SynthesisNet


def decoding_spread(model: SynthesisNet, latents: list[torch.Tensor], fused: torch.Tensor, target: str) -> torch.Tensor:
    """Per pixel, the standard deviation (population) between the target decoded from each single input's latent
    and from the fused latent (`fused`, (N, H, W)); zero with one input, whose single latent is the fused one."""
    singles = model.decoders[target](torch.cat([model.fuse([z]) for z in latents], dim=0))[:, 0]
    decodings = torch.cat([singles.float(), fused.float()], dim=0).unflatten(0, (len(latents) + 1, -1))
    return decodings.std(dim=0, correction=0)


def fusion_winner(latents: list[torch.Tensor]) -> torch.Tensor:
    """Per pixel, 1 + the index of the latent holding the maximum in the most channels (N, H, W, uint8).

    A channel where several latents share the maximum counts for each of them; inputs tied on the most channels
    are told apart by their mean over the channels (the larger wins, then the earlier input)."""
    stacked = torch.stack(latents, dim=0)  # (inputs, N, L, H, W)
    wins = (stacked == stacked.amax(dim=0, keepdim=True)).sum(dim=2)  # (inputs, N, H, W)
    tied = wins == wins.amax(dim=0, keepdim=True)
    mean = torch.where(tied, stacked.float().mean(dim=2), torch.tensor(float("-inf"), device=stacked.device))
    return (mean.argmax(dim=0) + 1).to(torch.uint8)


def check_explainable(model: SynthesisNet, model_path: object) -> None:
    """Only a fusion that picks one input per latent channel and pixel (max) has a winner to show."""
    if not model.fusion.picks_winner:
        raise CheckpointError(f"{model_path}: --explain shows which input wins the max fusion, but this model fuses "
                              f"by '{model.config.fusion}'")
