"""The three cost terms against hand computation."""

from __future__ import annotations

import torch

from mrimpute.config import ModelConfig
from mrimpute.model.losses import LossTerms, latent_variance, synthesis_loss
from mrimpute.model.network import SynthesisNet


def _setup():
    torch.manual_seed(0)
    model = SynthesisNet(ModelConfig(inputs=["t1", "t2"], outputs=["t2", "flair"], width=0.125)).eval()
    images = {"t1": torch.rand(2, 1, 16, 16), "t2": torch.rand(2, 1, 16, 16)}
    targets = {"t2": images["t2"], "flair": torch.rand(2, 1, 16, 16)}
    return model, images, targets


def test_latent_variance_by_hand() -> None:
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])
    # per pixel population variance: ((1-2)^2+(3-2)^2)/2 = 1 and ((2-4)^2+(6-4)^2)/2 = 4 -> mean 2.5
    assert latent_variance([a, b]).item() == 2.5
    assert latent_variance([a]).item() == 0.0


def test_terms_match_hand_computation() -> None:
    model, images, targets = _setup()
    with torch.no_grad():
        total, parts = synthesis_loss(model, images, targets)
        z = model.encode(images)
        mae = lambda p, t: (p - t).abs().mean().item()  # noqa: E731
        c1 = sum(sum(mae(model.decoders[o](z[i]), targets[o]) for o in targets) / 2 for i in z)
        var = torch.stack(list(z.values())).var(dim=0, unbiased=False).mean().item()
        fused = torch.maximum(z["t1"], z["t2"])
        c3 = sum(mae(model.decoders[o](fused), targets[o]) for o in targets) / 2
    assert abs(parts["c1"] - c1) < 1e-5
    assert abs(parts["c2"] - var) < 1e-6
    assert abs(parts["c3"] - c3) < 1e-5
    assert abs(total.item() - (c1 + var + c3)) < 1e-5


def test_terms_switch_off() -> None:
    model, images, targets = _setup()
    with torch.no_grad():
        _, parts = synthesis_loss(model, images, targets, LossTerms(c1=False, c2=True, c3=False))
    assert parts["c1"] == 0.0 and parts["c3"] == 0.0 and parts["c2"] > 0.0
    assert abs(parts["total"] - parts["c2"]) < 1e-7


def test_sampled_c1_is_unbiased_estimate() -> None:
    model, images, targets = _setup()
    with torch.no_grad():
        _, full = synthesis_loss(model, images, targets)
        picks = [{"t1": [a], "t2": [b]} for a in targets for b in targets]
        sampled = [synthesis_loss(model, images, targets, c1_outputs=p)[1]["c1"] for p in picks]
    # the average over every equally likely choice of one output per input is the full c1
    assert abs(sum(sampled) / len(sampled) - full["c1"]) < 1e-5


def test_squared_error_term_adds_to_c1_and_c3() -> None:
    model, images, targets = _setup()
    with torch.no_grad():
        _, plain = synthesis_loss(model, images, targets)
        _, both = synthesis_loss(model, images, targets, LossTerms(mse=2.0))
        z = model.encode(images)
        mse = lambda p, t: (p - t).square().mean().item()  # noqa: E731
        c1 = sum(sum(mse(model.decoders[o](z[i]), targets[o]) for o in targets) / 2 for i in z)
        fused = torch.maximum(z["t1"], z["t2"])
        c3 = sum(mse(model.decoders[o](fused), targets[o]) for o in targets) / 2
    assert abs(both["c1"] - (plain["c1"] + 2.0 * c1)) < 1e-5
    assert abs(both["c3"] - (plain["c3"] + 2.0 * c3)) < 1e-5
    assert both["c2"] == plain["c2"]
