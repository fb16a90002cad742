"""The synthesis engine for one subject: normalise, crop, run slice by slice (along any axis, merging several),
restore the grid; the uncertainty and fusion maps come from the same latents. runtime.session plans a request,
runs it here (run_synthesis) and writes the result; synthesize_products is the array-level entry point."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..config import SLICE_AXES
from ..data.intensity import blur_inside, bounding_box, crop_padded, paste
from ..data.normaliser import Scaling
from ..errors import CheckpointError, InputError
from ..io.nifti import Volume, check_same_grid, load_volume, require_brain
from ..lesions.masks import load_lesion_mask
from ..model.network import POOLING_GRID, RECEPTIVE_RADIUS, SynthesisNet
from .latent_maps import check_explainable, decoding_spread, fusion_winner
from .model_loading import OpenModel, open_model
from .prepared_inputs import normalise_inputs
from .reporting import Reporter
from .views import merge_views

PIXELS_PER_BATCH = 1 << 20  # about a million pixels a batch keeps memory low and the cache warm
PRODUCT_TYPES = {"synthesis": np.float32, "uncertainty": np.float32, "explain": np.uint8}


@dataclass
class SynthesisResult:
    """Synthesised volumes (RAS+, mean-normalised units), the brain mask used, and the reference input."""

    outputs: dict[str, np.ndarray]
    mask: np.ndarray
    reference: Volume
    factors: dict[str, float]  # each input's brain mean (paper units: divide a clipped input by it to compare)
    input_paths: list[Path]
    uncertainty: dict[str, np.ndarray] = field(default_factory=dict)  # per target, with uncertainty=True
    explanation: np.ndarray | None = None  # labels 1.. = inputs in `inputs` order, 0 = background
    inputs: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    scalings: dict[str, Scaling] = field(default_factory=dict)  # how each input became model units
    findings: dict[str, list[str]] = field(default_factory=dict)  # per input: what a user should be warned of
    normaliser: str = ""
    brain_extraction: str = ""  # the method, when the inputs were skull-stripped (synth --skull-strip)
    mirror: bool = False  # averaged with the synthesis of the inputs' left-right mirror image (synth --mirror)

    @property
    def warnings(self) -> list[str]:
        """What a user should be warned of about the inputs, one `<file>: <message>` line each."""
        return [f"{path}: {message}" for path, messages in self.findings.items() for message in messages]


class Product(NamedTuple):
    """One volume computed from the latents: a synthesis or its uncertainty (of a target from a subset of the
    inputs), or the fusion's winning input (of a subset, target None)."""

    kind: str  # "synthesis", "uncertainty" or "explain"
    subset: tuple[str, ...]
    target: str | None = None


def check_request(config_inputs: list[str], config_outputs: list[str], given: list[str], targets: list[str],
                  model_path: Path | str) -> None:
    """Refuse inputs the model has no encoder for and targets it has no decoder for."""
    unknown = [m for m in given if m not in config_inputs]
    if unknown:
        raise CheckpointError(f"{model_path}: the model has no encoder for {', '.join(unknown)} "
                              f"(its inputs: {', '.join(config_inputs)})")
    missing = [m for m in targets if m not in config_outputs]
    if missing:
        raise CheckpointError(f"{model_path}: the model cannot synthesise {', '.join(missing)} "
                              f"(its outputs: {', '.join(config_outputs)})")
    if not given:
        raise InputError("no input volume given")


def auto_batch_size(height: int, width: int) -> int:
    """Slices per forward pass for a slice size, bounded to keep peak memory modest."""
    return int(max(1, min(64, PIXELS_PER_BATCH // max(1, height * width))))


def _batch_products(model: SynthesisNet, latents: dict[str, torch.Tensor],
                    products: list[Product]) -> dict[Product, torch.Tensor]:
    """Every product for one batch of slices from its latents (each fused decoding computed once)."""
    fused: dict[tuple[tuple[str, ...], str], torch.Tensor] = {}

    def decoded(subset: tuple[str, ...], target: str) -> torch.Tensor:
        if (subset, target) not in fused:
            fused[(subset, target)] = model.decode_fused([latents[m] for m in subset], target)[:, 0].float()
        return fused[(subset, target)]

    values = {}
    for product in products:
        if product.kind == "synthesis":
            values[product] = decoded(product.subset, product.target)
        elif product.kind == "uncertainty" and product.target in model.config.error_heads:
            values[product] = model.expected_error([latents[m] for m in product.subset], product.target)[:, 0].float()
        elif product.kind == "uncertainty":
            values[product] = decoding_spread(model, [latents[m] for m in product.subset],
                                              decoded(product.subset, product.target), product.target)
        elif product.kind == "explain":
            values[product] = fusion_winner([latents[m] for m in product.subset])
        else:
            raise ValueError(f"unknown product kind '{product.kind}'")
    return values


def plane_box(mask: np.ndarray, exact: bool) -> list[slice]:
    """The in-plane crop of a run of slices (mask: slices, height, width), for all three axes.

    exact: the brain's box grown by the network's receptive radius, its corner on the pooling grid from the slice's
    corner and its far side within the slice padded to the grid, so that every brain pixel gets what the whole slice
    gives it (to float rounding); otherwise the brain's box itself, grown to a multiple of 4 (brain pixels within
    the receptive radius of its edge then differ from the whole slice's values: replicate padding at the box's edge).
    """
    if not exact:
        return bounding_box(mask, (1, 2), multiple=POOLING_GRID)
    box = [slice(0, mask.shape[0])]
    for axis in (1, 2):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        low = max(0, (int(present[0]) - RECEPTIVE_RADIUS) // POOLING_GRID * POOLING_GRID)
        high = -(-(int(present[-1]) + 1 + RECEPTIVE_RADIUS) // POOLING_GRID) * POOLING_GRID
        box.append(slice(low, min(high, -(-mask.shape[axis] // POOLING_GRID) * POOLING_GRID)))
    return box


@torch.inference_mode()
def synthesize_products(model: SynthesisNet, inputs: dict[str, np.ndarray], mask: np.ndarray, products: list[Product],
                        device: torch.device, batch_size: int = 0, reporter: Reporter | None = None,
                        axis: str | None = None, lesion: np.ndarray | None = None,
                        exact: bool = True, mirror: bool = False) -> dict[Product, np.ndarray]:
    """Compute each product slice by slice along `axis` (default: the model's own), over the slices with brain.

    Each batch of slices is cropped to its own brain box (see plane_box: exact, the default, gives the whole
    slice's values to float rounding). Each input's encoder runs once per batch, however many subsets, targets and
    maps are asked for; background stays zero. A lesion-aware model gets `lesion` (binary, RAS+; none: no lesion)
    as every input's second channel. mirror: also compute the left-right mirror image of the inputs (the flip the
    training crops get) and average the two, mirrored back (a test-time ensemble; twice the time).
    """
    passes = [_one_pass(model, inputs, mask, products, device, batch_size, reporter, axis, lesion, exact)]
    if mirror:
        mirrored = _one_pass(model, {m: _mirrored(v) for m, v in inputs.items()}, _mirrored(mask), products, device,
                             batch_size, reporter, axis, None if lesion is None else _mirrored(lesion), exact,
                             label=" (mirrored)")
        passes.append({p: _mirrored(v) for p, v in mirrored.items()})
    return _blur_error_maps(model, merge_views(passes, "mean"), mask)


def _blur_error_maps(model: SynthesisNet, results: dict[Product, np.ndarray],
                     mask: np.ndarray) -> dict[Product, np.ndarray]:
    """Each error head's map blurred inside the brain by its sigma (ModelConfig.error_map_blur, tune-uncertainty)."""
    blurred = dict(results)
    for product, volume in results.items():
        sigma = model.config.error_map_blur.get(product.target, 0.0) if product.kind == "uncertainty" else 0.0
        if sigma > 0:
            blurred[product] = np.where(mask, blur_inside(volume, mask, sigma), 0).astype(volume.dtype)
    return blurred


def _mirrored(volume: np.ndarray) -> np.ndarray:
    """A RAS+ volume's left-right mirror image (its first axis reversed)."""
    return np.ascontiguousarray(volume[::-1])


def _one_pass(model: SynthesisNet, inputs: dict[str, np.ndarray], mask: np.ndarray, products: list[Product],
              device: torch.device, batch_size: int = 0, reporter: Reporter | None = None, axis: str | None = None,
              lesion: np.ndarray | None = None, exact: bool = True, label: str = "") -> dict[Product, np.ndarray]:
    """synthesize_products without the mirror pass."""
    reporter = reporter or Reporter()
    axis_name = axis or model.config.slice_axis
    axis_index = SLICE_AXES[axis_name]
    stacked_mask = np.moveaxis(mask, axis_index, 0)
    present = np.flatnonzero(stacked_mask.reshape(stacked_mask.shape[0], -1).any(axis=1))
    results = {p: np.zeros(stacked_mask.shape, dtype=PRODUCT_TYPES[p.kind]) for p in products}
    if present.size == 0:
        return {p: np.moveaxis(r, 0, axis_index) for p, r in results.items()}
    needed = sorted({m for p in products for m in p.subset})
    if lesion is not None and not model.config.lesion_channel:
        raise ValueError("a lesion mask was given to a model without a lesion channel")
    planes = [np.zeros(mask.shape, np.float32) if lesion is None else lesion.astype(np.float32)] \
        if model.config.lesion_channel else []
    channels = {m: [np.moveaxis(v, axis_index, 0) for v in [inputs[m], *planes]] for m in needed}
    first, last = int(present[0]), int(present[-1]) + 1
    whole = plane_box(stacked_mask[first:last], exact)
    step = batch_size or auto_batch_size(whole[1].stop - whole[1].start, whole[2].stop - whole[2].start)
    reporter.start(("synthesising" if axis_name == model.config.slice_axis else f"synthesising ({axis_name})")
                   + label, last - first)
    for start in range(first, last, step):
        run = slice(start, min(start + step, last))
        if not stacked_mask[run].any():  # a gap between parts of the brain: nothing to compute
            reporter.advance(run.stop - run.start)
            continue
        box = plane_box(stacked_mask[run], exact)
        images = {m: torch.from_numpy(np.ascontiguousarray(
                         np.stack([crop_padded(c[run], box) for c in arrays], axis=1)))
                  .to(device).contiguous(memory_format=torch.channels_last) for m, arrays in channels.items()}
        for product, value in _batch_products(model, model.encode(images), products).items():
            paste(value.cpu().numpy(), box, results[product][run])
        reporter.advance(run.stop - run.start)
    reporter.finish()
    return {p: np.where(mask, np.moveaxis(r, 0, axis_index), 0).astype(r.dtype) for p, r in results.items()}


def check_extras(model: OpenModel, explain: bool = False, lesion: object = None) -> None:
    """Refuse --explain for a fusion without a winner, and a lesion mask for a model without a lesion channel."""
    if explain:
        check_explainable(model.network, model.path)
    if lesion is not None and not model.config.lesion_channel:
        raise CheckpointError(f"{model.path}: the model has no lesion channel; a lesion mask "
                              "needs a model trained with --lesion-channel")


def synthesize(inputs: dict[str, Path], targets: list[str], model: Path | OpenModel | None = None,
               device: str = "auto", batch_size: int = 0, reporter: Reporter | None = None,
               views: list[str] | None = None, merge: str = "mean", uncertainty: bool = False, explain: bool = False,
               lesion: np.ndarray | Path | None = None, exact: bool = True, skull_strip: bool = False,
               check_findings=None, mirror: bool = False) -> SynthesisResult:
    """Library entry point: check the request, then run_synthesis (the commands go through runtime.session,
    whose plan makes these checks once).

    model: a checkpoint (default: the shipped one) or a model opened once (open_model) for many calls."""
    opened = open_model(model, device)
    check_request(opened.config.inputs, opened.config.outputs, list(inputs), targets, opened.path)
    check_extras(opened, explain, lesion)
    return run_synthesis(opened, inputs, targets, batch_size, reporter, views=views, merge=merge,
                         uncertainty=uncertainty, explain=explain, lesion=lesion, exact=exact,
                         skull_strip=skull_strip, check_findings=check_findings, mirror=mirror)


def _load_inputs(model: OpenModel, inputs: dict[str, Path], skull_strip: bool) -> tuple[dict[str, Volume], str]:
    """The inputs the model encodes, in its order, on one grid, each with a brain; skull-stripped when asked
    (deepbet's mask of the T1, else T1c, applied to every input). Returns them and the brain extraction method."""
    volumes = {m: load_volume(inputs[m]) for m in model.config.inputs if m in inputs}
    check_same_grid(list(volumes.values()))
    for volume in volumes.values():
        require_brain(volume)
    if not skull_strip:
        return volumes, ""
    from ..preprocess.skullstrip import strip_volumes

    stripped, _, method = strip_volumes(volumes, use_gpu=model.device.type == "cuda")
    return stripped, method


def run_synthesis(model: OpenModel, inputs: dict[str, Path], targets: list[str], batch_size: int = 0,
                  reporter: Reporter | None = None, views: list[str] | None = None, merge: str = "mean",
                  uncertainty: bool = False, explain: bool = False, lesion: np.ndarray | Path | None = None,
                  exact: bool = True, skull_strip: bool = False, check_findings=None,
                  mirror: bool = False) -> SynthesisResult:
    """Load the inputs, synthesise the targets (a request already checked: check_request, check_extras), and
    return them with the reference input.

    views: slice axes to synthesise along, merged voxel-wise by `merge` (default: the model's own axis);
    uncertainty: also the learnt expected error (error heads) or the spread of the single-input and fused decodings
    of each target; explain: also which input wins the max fusion in most latent channels; lesion: a lesion mask
    (array on the inputs' grid, or a file) for a lesion-aware model, drawn into the synthesis; exact: False crops
    each batch of slices to the brain's box itself (faster; see plane_box); check_findings: called with the
    warnings about the inputs before the model runs (synth --strict refuses them); mirror: average with the
    synthesis of the inputs' left-right mirror image (see synthesize_products)."""
    volumes, brain_extraction = _load_inputs(model, inputs, skull_strip)
    ordered = list(volumes)
    reference = volumes[ordered[0]]
    if isinstance(lesion, (str, Path)):
        lesion = load_lesion_mask(lesion, reference)
    voxel_ml = float(abs(np.linalg.det(reference.affine[:3, :3]))) / 1000.0
    try:
        prepared = normalise_inputs({m: v.data for m, v in volumes.items()}, model.normaliser, voxel_ml)
    except ValueError as exc:
        raise InputError(f"{reference.path}: {exc}") from None
    findings = {str(volumes[m].path): prepared.findings[m] for m in ordered if prepared.findings[m]}
    if check_findings is not None:  # e.g. synth --strict: refuse before the model runs
        check_findings(findings)
    subset = tuple(ordered)
    kinds = ["synthesis"] + (["uncertainty"] if uncertainty else [])
    products = [Product(kind, subset, t) for t in targets for kind in kinds] + \
        ([Product("explain", subset)] if explain else [])
    views = views or [model.config.slice_axis]
    results = merge_views([synthesize_products(model.network, prepared.volumes, prepared.mask, products, model.device,
                                               batch_size, reporter, axis, lesion, exact, mirror)
                          for axis in views], merge)
    return SynthesisResult(outputs={t: results[Product("synthesis", subset, t)] for t in targets},
                           mask=prepared.mask, reference=reference, factors=prepared.factors,
                           input_paths=[v.path for v in volumes.values()],
                           uncertainty={t: results[Product("uncertainty", subset, t)] for t in targets if uncertainty},
                           explanation=results[Product("explain", subset)] if explain else None,
                           inputs=list(ordered), views=list(views), scalings=prepared.scalings, findings=findings,
                           normaliser=model.normaliser.name, brain_extraction=brain_extraction, mirror=mirror)
