"""Network contract: shapes for every fusion and input subset; each encoder runs once per forward."""

from __future__ import annotations

import pytest
import torch

from mrimpute.config import FUSIONS, ModelConfig
from mrimpute.modalities import all_subsets
from mrimpute.model.network import SynthesisNet, fuse, fuse_stacked

MODS = ["t1", "t1c", "t2", "flair"]


@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_subset_gives_every_output(fusion: str) -> None:
    torch.manual_seed(0)
    model = SynthesisNet(ModelConfig(inputs=MODS, outputs=MODS, width=0.125, fusion=fusion)).eval()
    images = {m: torch.rand(2, 1, 24, 20) for m in MODS}
    subsets = all_subsets(MODS)
    assert len(subsets) == 15
    with torch.no_grad():
        for subset in subsets:
            outputs = model({m: images[m] for m in subset})
            assert set(outputs) == set(MODS)
            for value in outputs.values():
                assert value.shape == (2, 1, 24, 20)
                assert torch.all(value >= 0)  # final ReLU


@pytest.mark.parametrize("fusion", FUSIONS)
def test_latent_size(fusion: str) -> None:
    model = SynthesisNet(ModelConfig(inputs=["t1", "t2"], outputs=["flair"], width=0.125, latent=8, fusion=fusion))
    latent = model.encode({"t1": torch.rand(1, 1, 16, 16)})["t1"]
    assert latent.shape == (1, 4 if fusion == "hemis" else 8, 16, 16)
    assert model.fuse([latent, latent]).shape[1] == 8


def test_each_encoder_runs_once_for_all_outputs() -> None:
    model = SynthesisNet(ModelConfig(inputs=MODS, outputs=MODS, width=0.125)).eval()
    calls = {m: 0 for m in MODS}
    for name, encoder in model.encoders.items():
        encoder.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    with torch.no_grad():
        model({"t1": torch.rand(1, 1, 16, 16), "t2": torch.rand(1, 1, 16, 16)})
    assert calls == {"t1": 1, "t1c": 0, "t2": 1, "flair": 0}


def test_fusions_by_hand() -> None:
    a = torch.tensor([[[[1.0, -2.0]]]])
    b = torch.tensor([[[[3.0, -4.0]]]])
    assert torch.equal(fuse([a, b], "max"), torch.tensor([[[[3.0, -2.0]]]]))
    assert torch.equal(fuse([a, b], "mean"), torch.tensor([[[[2.0, -3.0]]]]))
    hemis = fuse([a, b], "hemis")
    assert torch.equal(hemis, torch.tensor([[[[2.0, -3.0]], [[1.0, 1.0]]]]))


def test_mean_max_fusion_is_a_learned_mix_of_mean_and_max() -> None:
    a = torch.tensor([[[[1.0]], [[-2.0]]]])
    b = torch.tensor([[[[3.0]], [[-4.0]]]])
    mix = torch.tensor([0.0, 40.0], requires_grad=True)  # channel 0: halfway; channel 1: all max
    fused = fuse([a, b], "mean-max", mix)
    assert torch.allclose(fused, torch.tensor([[[[2.5]], [[-2.0]]]]))
    assert torch.allclose(fuse_stacked([a, b], "mean-max", mix), fused)
    fused.sum().backward()
    assert mix.grad[0] == pytest.approx(0.25 * (3.0 - 2.0))  # sigmoid'(0) * (max - mean)
    with pytest.raises(ValueError, match="mixing weights"):
        fuse([a, b], "mean-max")
    model = SynthesisNet(ModelConfig(inputs=["t1", "t2"], outputs=["flair"], width=0.125, fusion="mean-max"))
    assert model.fusion_mix.shape == (16,) and "fusion_mix" in dict(model.named_parameters())
    assert torch.equal(model.fuse([a.repeat(1, 8, 1, 1), b.repeat(1, 8, 1, 1)]),
                       fuse([a.repeat(1, 8, 1, 1), b.repeat(1, 8, 1, 1)], "mean-max", torch.zeros(16)))


def test_output_mean_averages_decoded_images() -> None:
    torch.manual_seed(0)
    model = SynthesisNet(ModelConfig(inputs=["t1", "t2"], outputs=["flair"], width=0.125, fusion="output-mean")).eval()
    images = {"t1": torch.rand(1, 1, 16, 16), "t2": torch.rand(1, 1, 16, 16)}
    with torch.no_grad():
        latents = model.encode(images)
        singles = [model.decoders["flair"](z) for z in latents.values()]
        assert torch.allclose(model(images)["flair"], (singles[0] + singles[1]) / 2)


def test_replicate_padding_keeps_size_and_width_multiplier_shrinks() -> None:
    small = SynthesisNet(ModelConfig(inputs=["t1"], outputs=["t2"], width=0.25))
    full = SynthesisNet(ModelConfig(inputs=["t1"], outputs=["t2"], width=1.0))
    assert all(c.padding_mode == "replicate" for c in full.modules()
               if isinstance(c, torch.nn.Conv2d) and c.kernel_size == (3, 3))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(small) < count(full) / 8
    assert full.encoders["t1"].level1[0].out_channels == 32 and full.encoders["t1"].bottom[0].out_channels == 128


def test_decoders_start_with_their_output_relu_active() -> None:
    """A new decoder's output bias is HEAD_BIAS, so its ReLU passes gradient from the first step (a bias near 0
    let a T1c decoder die in a short training run: constant 0 output, its MAE frozen)."""
    from mrimpute.model.network import HEAD_BIAS

    torch.manual_seed(0)
    model = SynthesisNet(ModelConfig(inputs=["t1"], outputs=["t1c", "flair"], width=0.25)).eval()
    with torch.no_grad():
        outputs = model({"t1": torch.rand(2, 1, 32, 32)})
    for name, image in outputs.items():
        assert float(model.decoders[name].head[0].bias.detach()) == HEAD_BIAS
        assert float((image > 0).float().mean()) > 0.9
