"""The fusion registry (model/fusion.py): every fusion's fast form gives its plain form, and a fusion registered from
outside (one class, nothing else changed) flows through ModelConfig, SynthesisNet, the loss and a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mrimpute import config as config_module
from mrimpute.config import ModelConfig
from mrimpute.errors import CheckpointError
from mrimpute.model import fusion as fusion_module
from mrimpute.model.fusion import FUSIONS, Fusion
from mrimpute.model.losses import LossTerms, synthesis_loss
from mrimpute.model.network import SynthesisNet, fuse, fuse_stacked, use_reference_layers

BUILT_IN = ("max", "mean", "hemis", "output-mean", "mean-max")


def test_the_registry_is_the_one_the_configuration_reads() -> None:
    assert fusion_module.FUSIONS is config_module.FUSIONS
    assert tuple(FUSIONS) == BUILT_IN
    assert all(isinstance(f, Fusion) and f.name == name for name, f in FUSIONS.items())
    # what the paper's fusions declare
    assert [n for n, f in FUSIONS.items() if f.learnt] == ["mean-max"]
    assert [n for n, f in FUSIONS.items() if f.per_output] == ["output-mean"]
    assert [n for n, f in FUSIONS.items() if f.picks_winner] == ["max"]
    assert {n: f.encoder_channels(16) for n, f in FUSIONS.items()} == {n: 8 if n == "hemis" else 16 for n in BUILT_IN}


@pytest.mark.parametrize("name", BUILT_IN)
@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_fast_form_gives_the_stacked_form(name: str, count: int) -> None:
    fusion, latent = FUSIONS[name], 6
    generator = torch.Generator().manual_seed(count)
    shape = (2, fusion.encoder_channels(latent), 5, 7)
    latents = [torch.randn(*shape, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(count)]
    params = (torch.randn(latent, generator=generator, dtype=torch.float64, requires_grad=True)
              if fusion.learnt else None)
    fast, plain = fusion.fuse(latents, params), fusion.fuse_stacked(latents, params)
    assert fast.shape == plain.shape == (2, latent, 5, 7)
    assert torch.allclose(fast, plain, rtol=0, atol=1e-12)
    # and the gradients (random latents have no max ties; one latent is its own fusion: no gradient to the mix)
    weights = torch.randn(plain.shape, generator=generator, dtype=torch.float64)
    leaves = latents + ([params] if params is not None else [])
    grads_fast = torch.autograd.grad((fast * weights).sum(), leaves, allow_unused=True)
    grads_plain = torch.autograd.grad((plain * weights).sum(), leaves, allow_unused=True)
    for leaf, a, b in zip(leaves, grads_fast, grads_plain):
        a, b = (torch.zeros_like(leaf) if g is None else g for g in (a, b))
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    # the by-name functions are the registry's
    assert torch.equal(fuse(latents, name, params), fast) and torch.equal(fuse_stacked(latents, name, params), plain)


def test_a_fusion_without_its_learnt_parameters_or_an_unknown_name_is_refused() -> None:
    a, b = torch.rand(1, 2, 3, 3), torch.rand(1, 2, 3, 3)
    with pytest.raises(ValueError, match="mixing weights"):
        FUSIONS["mean-max"].fuse([a, b])
    with pytest.raises(ValueError, match="unknown fusion 'median'"):
        fuse([a, b], "median")
    with pytest.raises(ValueError, match="unknown fusion 'median'"):
        ModelConfig(inputs=["t1"], outputs=["t2"], fusion="median")
    with pytest.raises(ValueError, match="taken"):
        fusion_module.register(type("AnotherMax", (Fusion,), {"name": "max"}))


class ScaledMinMax(Fusion):
    """A toy: the pixel-wise min and max concatenated (each encoder gives half the latent), times a learnt scale per
    latent channel; only a plain form."""

    name = "toy-min-max"
    learnt = True

    def encoder_channels(self, latent: int) -> int:
        return latent // 2

    def check(self, latent: int) -> None:
        if latent % 2:
            raise ValueError("toy-min-max needs an even latent size")

    def initial_params(self, latent: int) -> torch.Tensor:
        return torch.full((latent,), 1.5)

    def fuse_stacked(self, latents: list[torch.Tensor], params: torch.Tensor | None = None) -> torch.Tensor:
        stacked = torch.stack(latents, dim=0)
        return torch.cat([stacked.amin(dim=0), stacked.amax(dim=0)], dim=1) * params.view(1, -1, 1, 1)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> str:
    """ScaledMinMax in the registry for one test (as @register would put it there, and taken out again)."""
    monkeypatch.setitem(FUSIONS, ScaledMinMax.name, ScaledMinMax())
    return ScaledMinMax.name


def test_a_new_fusion_class_flows_through_config_network_loss_and_checkpoint(toy: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even latent"):
        ModelConfig(inputs=["t1", "t2"], outputs=["flair"], latent=7, fusion=toy)
    config = ModelConfig(inputs=["t1", "t2", "flair"], outputs=["t2", "flair"], latent=8, width=0.125, fusion=toy)
    assert config.encoder_latent == 4
    torch.manual_seed(0)
    model = SynthesisNet(config)
    assert torch.equal(model.fusion_mix.detach(), torch.full((8,), 1.5))  # its learnt parameters, under the usual key
    assert "fusion_mix" in model.state_dict()

    images = {m: torch.rand(2, 1, 20, 24) for m in ("t1", "t2", "flair")}
    latents = model.encode({m: images[m] for m in ("t1", "t2")})
    assert all(z.shape == (2, 4, 20, 24) for z in latents.values())
    fused = model.fuse(list(latents.values()))
    z1, z2 = latents.values()
    expected = torch.cat([torch.minimum(z1, z2), torch.maximum(z1, z2)], dim=1) * 1.5
    assert fused.shape == (2, 8, 20, 24) and torch.allclose(fused, expected)

    model.eval()
    with torch.no_grad():
        fast = model({"t1": images["t1"], "t2": images["t2"]})
        plain = use_reference_layers(model, True)({"t1": images["t1"], "t2": images["t2"]})
        use_reference_layers(model, False)
    assert set(fast) == {"t2", "flair"} and all(v.shape == (2, 1, 20, 24) for v in fast.values())
    assert all(torch.allclose(fast[m], plain[m], atol=1e-5) for m in fast)

    model.train()
    total, parts = synthesis_loss(model, images, {"t2": images["t2"], "flair": images["flair"]}, LossTerms())
    total.backward()
    assert parts["c3"] > 0 and model.fusion_mix.grad is not None and model.fusion_mix.grad.abs().sum() > 0

    from mrimpute.io.checkpoint import save_checkpoint
    from mrimpute.runtime.latent_maps import check_explainable
    from mrimpute.runtime.model_loading import load_model

    with torch.no_grad():
        model.fusion_mix.fill_(0.75)
    path = tmp_path / "toy.pt"
    save_checkpoint(path, config, model.state_dict(), {})
    loaded, _ = load_model(path, torch.device("cpu"))
    assert loaded.config.fusion == toy and torch.equal(loaded.fusion_mix.detach(), torch.full((8,), 0.75))
    with torch.no_grad():
        again = loaded({"t1": images["t1"], "t2": images["t2"]})
    model.eval()
    with torch.no_grad():
        assert all(torch.allclose(again[m], model({"t1": images["t1"], "t2": images["t2"]})[m], atol=1e-6)
                   for m in again)
    with pytest.raises(CheckpointError, match="toy-min-max"):  # it picks no single winning input
        check_explainable(loaded, path)


def test_a_per_output_fusion_class_decodes_each_latent(monkeypatch: pytest.MonkeyPatch) -> None:
    class MeanOfImages(Fusion):
        name = "toy-per-output"
        per_output = True

        def fuse_stacked(self, latents: list[torch.Tensor], params: torch.Tensor | None = None) -> torch.Tensor:
            return torch.stack(latents, dim=0).mean(dim=0)

    monkeypatch.setitem(FUSIONS, MeanOfImages.name, MeanOfImages())
    torch.manual_seed(0)
    model = SynthesisNet(ModelConfig(inputs=["t1", "t2"], outputs=["flair"], width=0.125, fusion=MeanOfImages.name))
    assert not any("fusion" in key for key in model.state_dict())
    images = {"t1": torch.rand(1, 1, 16, 16), "t2": torch.rand(1, 1, 16, 16)}
    with torch.no_grad():
        singles = [model.decoders["flair"](z) for z in model.encode(images).values()]
        assert torch.allclose(model(images)["flair"], (singles[0] + singles[1]) / 2)
    total, parts = synthesis_loss(model, images, {"flair": images["t1"]}, LossTerms())
    assert torch.isfinite(total) and parts["c3"] > 0
