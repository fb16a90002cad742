"""The fast layers compute what the plain layers compute (float tolerance), in inference and in training, on the
CPU and under autocast; the volume loop matches the plain eager loop; the CUDA precision policy."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mrimpute.config import FUSIONS, ModelConfig
from mrimpute.io.nifti import load_volume
from mrimpute.model.fast_ops import replicate_pad, upsampling_conv
from mrimpute.model.network import POOLING_GRID, RECEPTIVE_RADIUS, SynthesisNet, use_reference_layers
from mrimpute.pipeline.bench.cases import reference_synthesis
from mrimpute.runtime.device import Precision, autocast, choose_precision, grad_scaler
from mrimpute.runtime.model_loading import default_model_path, load_model
from mrimpute.runtime.prepared_inputs import normalise_inputs
from mrimpute.runtime.synthesize import Product, synthesize_products

from conftest import MODALITIES, write_subject

MODS = list(MODALITIES)


def _model(width: float = 0.125, fusion: str = "max", channels_last: bool = True) -> SynthesisNet:
    torch.manual_seed(0)
    model = SynthesisNet(ModelConfig(inputs=MODS, outputs=MODS, width=width, fusion=fusion))
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _both(model: SynthesisNet, run):
    """run(model) with the plain layers, then with the fast ones."""
    reference = run(use_reference_layers(model, True))
    return reference, run(use_reference_layers(model, False))


def _images(n: int = 2, height: int = 20, width: int = 28, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {m: 3 * torch.rand(n, 1, height, width, generator=generator) for m in MODS}


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("width,channels_last", [(0.125, True), (0.375, True), (0.25, False)])
def test_fast_inference_matches_plain_layers(fusion: str, width: float, channels_last: bool) -> None:
    model = _model(width, fusion, channels_last).eval()
    images = _images()

    def run(m: SynthesisNet) -> list[torch.Tensor]:
        with torch.inference_mode():
            latents = m.encode({k: images[k] for k in ("t1", "t2", "flair")})
            return [*latents.values(), *m({k: images[k] for k in ("t1c", "t2")}).values()]

    reference, fast = _both(model, run)
    assert max(float((a - b).abs().max()) for a, b in zip(reference, fast)) < 1e-5
    assert max(float(a.abs().max()) for a in reference) > 1e-3  # not trivially zero


def test_fast_training_path_matches_plain_gradients() -> None:
    model = _model(0.25)
    images = _images(seed=2)

    def run(m: SynthesisNet) -> list[torch.Tensor]:
        m.zero_grad(set_to_none=True)
        outputs = m({k: images[k] for k in ("t1", "t1c")})
        sum((o - images[k]).abs().mean() for k, o in outputs.items()).backward()
        return [p.grad.clone() for p in m.parameters() if p.grad is not None]

    reference, fast = _both(model, run)
    assert len(reference) == len(fast) > 0
    for a, b in zip(reference, fast):
        assert float((a - b).abs().max()) <= 1e-4 * float(a.abs().max()) + 1e-7


def test_fast_ops_against_torch() -> None:
    x = torch.rand(2, 3, 5, 6, dtype=torch.double, requires_grad=True)
    weight = torch.rand(4, 3, 3, 3, dtype=torch.double, requires_grad=True)
    bias = torch.rand(4, dtype=torch.double, requires_grad=True)
    assert torch.equal(replicate_pad(x), F.pad(x, (1, 1, 1, 1), mode="replicate"))
    plain = F.conv2d(F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1, 1, 1, 1), mode="replicate"),
                     weight, bias)
    assert torch.allclose(upsampling_conv(replicate_pad(x), weight, bias), plain, atol=1e-12)
    assert torch.autograd.gradcheck(replicate_pad, (x,))
    assert torch.autograd.gradcheck(lambda a, w, b: upsampling_conv(replicate_pad(a), w, b), (x, weight, bias))


def test_fast_inference_under_autocast_keeps_its_buffers_in_the_compute_type() -> None:
    """What CUDA autocast does to the buffers, exercised with the CPU's bfloat16 autocast."""
    model = _model(0.25).eval()
    images = {k: v for k, v in _images(n=1, height=16, width=24).items() if k in ("t1", "t2")}

    def run(m: SynthesisNet) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return m.decode_fused(list(m.encode(images).values()), "flair").float()

    reference, fast = _both(model, run)
    assert float((reference - fast).abs().max()) <= 0.05 * float(reference.abs().max()) + 1e-3


def test_volume_loop_matches_plain_eager_loop(tmp_path: Path) -> None:
    """synthesize_products (batches, channels_last, skipped empty slices, fast layers) against the plain loop
    (every slice, batch 1, plain layers), on a mask that fills its slices' plane so that no crop is involved."""
    paths = write_subject(tmp_path / "s", shape=(24, 20, 9))
    prepared = normalise_inputs({m: load_volume(paths[m]).data for m in ("t1", "t2")})
    inputs, _ = prepared.volumes, prepared.mask
    mask = np.zeros(inputs["t1"].shape, dtype=bool)
    mask[:, :, 2:7] = True
    model = _model(0.25).eval()
    flair = Product("synthesis", ("t1", "t2"), "flair")
    fast = synthesize_products(model, inputs, mask, [flair], torch.device("cpu"), batch_size=2)
    reference = reference_synthesis(use_reference_layers(_model(0.25, channels_last=False).eval()), inputs, mask,
                                    ("t1", "t2"), ["flair"], 2, list(range(9)), torch.device("cpu"))
    assert np.abs(np.moveaxis(fast[flair], 2, 0) - reference["flair"]).max() < 1e-4
    assert np.abs(reference["flair"]).max() > 1e-3


def test_shipped_checkpoint_still_loads() -> None:
    model, payload = load_model(default_model_path(), torch.device("cpu"))
    assert set(model.state_dict()) == set(payload["state_dict"])


def test_precision_policy() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert choose_precision(cpu) == Precision() and choose_precision(cuda, amp=False) == Precision()
    assert choose_precision(cuda, bf16_supported=True) == Precision(torch.bfloat16, scale_loss=False)
    assert choose_precision(cuda, bf16_supported=False) == Precision(torch.float16, scale_loss=True)
    assert isinstance(autocast(cpu, Precision()), contextlib.nullcontext)
    with autocast(cpu, Precision(torch.bfloat16)):
        assert torch.is_autocast_enabled("cpu")
    scaler = grad_scaler(cpu, Precision())
    loss = torch.tensor(2.0)
    assert not scaler.is_enabled() and scaler.scale(loss) is loss


def test_receptive_radius() -> None:
    """One input pixel changes outputs at most RECEPTIVE_RADIUS pixels away (and some that far)."""
    torch.manual_seed(0)
    model = use_reference_layers(SynthesisNet(ModelConfig(inputs=["t1"], outputs=["t2"], width=0.125)).double().eval())
    head = []
    model.decoders["t2"].head[0].register_forward_hook(lambda _m, _i, out: head.append(out))  # before the ReLU
    size, reach = 96, 0
    with torch.no_grad():
        model({"t1": torch.zeros(1, 1, size, size, dtype=torch.double)})
        for phase in range(POOLING_GRID):
            centre = size // 2 + phase
            image = torch.zeros(1, 1, size, size, dtype=torch.double)
            image[0, 0, centre, centre] = 5.0
            model({"t1": image})
            ys, xs = torch.nonzero((head[-1] - head[0])[0, 0] != 0, as_tuple=True)
            reach = max(reach, int((ys - centre).abs().max()), int((xs - centre).abs().max()))
    assert reach == RECEPTIVE_RADIUS


def test_exact_crop_gives_the_whole_slices_values_with_the_shipped_model() -> None:
    """synth's default crop (each batch on its brain box grown by the receptive radius) against the plain loop on
    whole slices, with the shipped model on 12 slices of the bundled subject; the tight crop (--no-exact) does
    differ near the brain's edge, which shows the comparison can see a crop."""
    from mrimpute.pipeline.demo import SAMPLE_DIR

    prepared = normalise_inputs({m: load_volume(SAMPLE_DIR / f"{m}.nii.gz").data[:, :, 70:82]
                                        for m in ("t1", "t2")})
    inputs, mask = prepared.volumes, prepared.mask
    model, _ = load_model(default_model_path(), torch.device("cpu"))
    flair = Product("synthesis", ("t1", "t2"), "flair")
    exact = synthesize_products(model, inputs, mask, [flair], torch.device("cpu"), batch_size=5)[flair]
    tight = synthesize_products(model, inputs, mask, [flair], torch.device("cpu"), batch_size=5, exact=False)[flair]
    plain, _ = load_model(default_model_path(), torch.device("cpu"))
    reference = reference_synthesis(use_reference_layers(plain.to(memory_format=torch.contiguous_format)), inputs,
                                    mask, ("t1", "t2"), ["flair"], 2, list(range(12)), torch.device("cpu"))["flair"]
    brain = np.moveaxis(mask, 2, 0)
    assert np.abs(np.moveaxis(exact, 2, 0) - reference)[brain].max() < 1e-4
    assert np.abs(np.moveaxis(tight, 2, 0) - reference)[brain].max() > 1e-2
    assert np.all(exact[~mask] == 0) and reference[brain].mean() > 0.5
