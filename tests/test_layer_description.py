"""The layer description (model/layers.py) is the one place the architecture is written: the shipped models' weights
fit what it builds, and a variant described there (another depth, more input channels, another decoder) builds and
runs the same function on the reference, autograd and inference paths."""

from __future__ import annotations

import pytest
import torch

from mrimpute.config import ModelConfig
from mrimpute.io.checkpoint import load_checkpoint
from mrimpute.model import network
from mrimpute.model.layers import (
    Convs,
    Dense,
    Head,
    Layers,
    Pool,
    UpSkip,
    decoder_layers,
    encoder_layers,
    network_layers,
    receptive_radius,
)
from mrimpute.model.network import LayerStack, SynthesisNet, use_reference_layers
from mrimpute.runtime.model_loading import shipped_model


def test_the_default_description_is_the_papers_network() -> None:
    encoder, decoder = network_layers(ModelConfig(inputs=["t1"], outputs=["t2"], width=1.0, latent=16))
    assert encoder == Layers(1, (Convs("level1", (32, 32)), Pool(), Convs("level2", (64, 64)), Pool(),
                                 Convs("bottom", (128, 128)), UpSkip("up2", 64), Convs("merge2", (64, 64)),
                                 UpSkip("up1", 32), Convs("merge1", (32, 32)), Convs("to_latent", (16,))), leaky=True)
    assert decoder == Layers(16, (Dense("block1", (32, 32)), Dense("block2", (32, 32)), Head("head", 1)), leaky=False)
    assert network_layers(ModelConfig(inputs=["t1"], outputs=["t2"], lesion_channel=True))[0].in_channels == 2
    assert (network.RECEPTIVE_RADIUS, network.POOLING_GRID) == (31, 4)


@pytest.mark.parametrize("name", ["default.pt", "lesion.pt", "diffusion.pt"])
def test_shipped_weights_fit_the_built_modules_key_for_key(name: str) -> None:
    """Same keys, same order (an optimiser's state follows the parameters' order), same shapes."""
    payload = load_checkpoint(shipped_model(name))
    built = SynthesisNet(ModelConfig.from_dict(payload["config"])).state_dict()
    assert [(k, tuple(v.shape)) for k, v in built.items()] == [(k, tuple(v.shape))
                                                               for k, v in payload["state_dict"].items()]


def _paths(stack: torch.nn.Module, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, list[torch.Tensor]]]:
    """Each path's output; the reference's and the autograd path's parameter gradients of a fixed weighting."""
    weights = torch.rand(stack(x).shape, generator=torch.Generator().manual_seed(5), dtype=x.dtype)
    results = {}
    for path in ("reference", "autograd"):
        use_reference_layers(stack, path == "reference")
        stack.zero_grad(set_to_none=True)
        output = stack(x)
        (output * weights).sum().backward()
        results[path] = (output.detach(), [p.grad.clone() for p in stack.parameters()])
    use_reference_layers(stack, False)
    with torch.inference_mode():
        results["inference"] = (stack(x), [])
    return results


def _assert_paths_agree(stack: torch.nn.Module, x: torch.Tensor) -> None:
    results = _paths(stack, x)
    reference, grads = results["reference"]
    assert float(reference.abs().max()) > 1e-3  # not trivially zero
    for path in ("autograd", "inference"):
        assert float((results[path][0] - reference).abs().max()) <= 1e-5 * float(reference.abs().max())
    for a, b in zip(grads, results["autograd"][1], strict=True):
        assert float((a - b).abs().max()) <= 1e-4 * float(a.abs().max()) + 1e-7


VARIANTS = {
    "depth 4": encoder_layers(1, 8, 0.25, levels=(32, 64, 128, 256)),
    "depth 2, 2.5D input": encoder_layers(3, 8, 0.25, levels=(32, 64)),
    "no pooling": encoder_layers(2, 8, 0.25, levels=(32,)),
    "three dense blocks": decoder_layers(8, 0.25, blocks=3),
    "error head (no output ReLU)": decoder_layers(8, 0.25, bounded=False),
    "hand-written": Layers(3, (Convs("a", (6,)), Pool(), Dense("b", (5, 4)), Pool(), Convs("c", (7,)),
                               UpSkip("d", 6), UpSkip("e", 5), Dense("f", (4,)), Head("g", 2)), leaky=True),
}


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_described_variant_runs_the_same_function_on_every_path(variant: str, channels_last: bool) -> None:
    torch.manual_seed(0)
    layers = VARIANTS[variant]
    stack = LayerStack(layers)
    x = 3 * torch.rand(2, layers.in_channels, 24, 40, generator=torch.Generator().manual_seed(1))
    if channels_last:
        stack, x = stack.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    _assert_paths_agree(stack, x)


def test_a_deeper_network_is_one_change_of_the_description(monkeypatch: pytest.MonkeyPatch) -> None:
    """network_layers is what SynthesisNet builds from: a deeper encoder there gives a whole working network."""
    def deeper(config: ModelConfig) -> tuple[Layers, Layers]:
        return encoder_layers(1, config.encoder_latent, config.width, levels=(32, 64, 128, 256)), \
            decoder_layers(config.latent, config.width)

    monkeypatch.setattr(network, "network_layers", deeper)
    torch.manual_seed(0)
    model = SynthesisNet(ModelConfig(inputs=["t1", "t2"], outputs=["flair"], width=0.125, latent=8))
    assert "encoders.t1.level3.0.weight" in model.state_dict() and "encoders.t1.up3.0.weight" in model.state_dict()
    images = {m: torch.rand(1, 1, 32, 24, generator=torch.Generator().manual_seed(2)) for m in ("t1", "t2")}
    with torch.inference_mode():
        fast = model(images)["flair"]
        plain = use_reference_layers(model)(images)["flair"]
    assert fast.shape == (1, 1, 32, 24) and float((fast - plain).abs().max()) < 1e-5
    with pytest.raises(ValueError, match="not a multiple of 8"):
        model({"t1": torch.rand(1, 1, 36, 24)})


def _measured_reach(encoder: LayerStack, decoder: LayerStack, size: int) -> int:
    """The farthest output pixel (before the decoder's last activation) one input pixel changes, over the phases of
    the poolings."""
    head = []
    getattr(decoder, decoder.layers.steps[-1].name)[0].register_forward_hook(lambda _m, _i, out: head.append(out))
    reach = 0
    with torch.no_grad():
        decoder(encoder(torch.zeros(1, encoder.layers.in_channels, size, size, dtype=torch.double)))
        for phase in range(2 ** encoder.layers.pools):
            centre = size // 2 + phase
            image = torch.zeros(1, encoder.layers.in_channels, size, size, dtype=torch.double)
            image[0, 0, centre, centre] = 5.0
            decoder(encoder(image))
            ys, xs = torch.nonzero((head[-1] - head[0])[0, 0] != 0, as_tuple=True)
            reach = max(reach, int((ys - centre).abs().max()), int((xs - centre).abs().max()))
    return reach


@pytest.mark.parametrize("levels", [(32, 64, 128, 256), (32, 64), (32, 64, 128)])
def test_receptive_radius_follows_the_description(levels: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    encoder, decoder = encoder_layers(1, 4, 0.125, levels=levels), decoder_layers(4, 0.125)
    stacks = [use_reference_layers(LayerStack(layers).double()) for layers in (encoder, decoder)]
    for conv in stacks[1].modules():  # positive biases keep the decoder's ReLUs open: a closed one hides the reach
        if isinstance(conv, torch.nn.Conv2d):
            torch.nn.init.constant_(conv.bias, 3.0)
    radius, grid = receptive_radius(encoder, decoder), 2 ** encoder.pools
    assert radius == _measured_reach(*stacks, size=grid * -(-(2 * radius + 2 * grid) // grid))


def test_malformed_descriptions_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        Layers(1, (Convs("a", (4,)), Convs("a", (4,))), leaky=True)
    with pytest.raises(ValueError, match="no skip connection"):
        Layers(1, (Convs("a", (4,)), UpSkip("b", 4)), leaky=True)
    with pytest.raises(ValueError, match="every pool"):
        Layers(1, (Convs("a", (4,)), Pool(), Convs("b", (4,))), leaky=True)
