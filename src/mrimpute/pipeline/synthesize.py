"""Synthesis of missing contrasts for one subject: normalise, crop, run slice by slice, restore the grid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import SLICE_AXES
from ..data.intensity import bounding_box, crop_padded, foreground_mask, normalise, uncrop
from ..errors import CheckpointError, InputError, OutputError
from ..io.atomic import check_writable, refuse_overwrite
from ..io.checkpoint import load_checkpoint
from ..io.nifti import Volume, check_same_grid, load_volume, save_like
from ..modalities import KNOWN_MODALITIES, canonical_modality
from ..model.network import SynthesisNet
from .device import resolve_device
from .model_loading import load_model
from .reporting import Reporter

PIXELS_PER_BATCH = 1 << 20  # about a million pixels a batch keeps memory low and the cache warm


@dataclass
class SynthesisResult:
    """Synthesised volumes (RAS+, mean-normalised units), the brain mask used, and the reference input."""

    outputs: dict[str, np.ndarray]
    mask: np.ndarray
    reference: Volume
    factors: dict[str, float]
    input_paths: list[Path]


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


def normalise_inputs(volumes: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, float]]:
    """The brain mask (union of the inputs' foregrounds) and each input divided by its mean over it."""
    masks = {m: foreground_mask(v) for m, v in volumes.items()}
    mask = np.logical_or.reduce(list(masks.values()))
    normalised, factors = {}, {}
    for m, volume in volumes.items():
        normalised[m], factors[m] = normalise(volume, mask & masks[m])
    return normalised, mask, factors


def auto_batch_size(height: int, width: int) -> int:
    """Slices per forward pass for a slice size, bounded to keep peak memory modest."""
    return int(max(1, min(64, PIXELS_PER_BATCH // max(1, height * width))))


@torch.inference_mode()
def synthesize_subsets(model: SynthesisNet, inputs: dict[str, np.ndarray], mask: np.ndarray,
                       requests: list[tuple[tuple[str, ...], str]], device: torch.device, batch_size: int = 0,
                       reporter: Reporter | None = None) -> dict[tuple[tuple[str, ...], str], np.ndarray]:
    """Synthesise each (input subset, target) request slice by slice over the brain's bounding box.

    Each input's encoder runs once per batch of slices, however many subsets and targets are asked for;
    background stays zero.
    """
    reporter = reporter or Reporter()
    axis = SLICE_AXES[model.config.slice_axis]
    in_plane = tuple(a for a in range(3) if a != axis)
    box = bounding_box(mask, in_plane, multiple=4)
    present = np.flatnonzero(mask.any(axis=in_plane))
    outputs = {request: np.zeros(mask.shape, dtype=np.float32) for request in requests}
    if present.size == 0:
        return outputs
    box[axis] = slice(int(present[0]), int(present[-1]) + 1)
    needed = sorted({m for subset, _ in requests for m in subset})
    stacks = {m: np.moveaxis(crop_padded(inputs[m], box), axis, 0) for m in needed}
    count, height, width = next(iter(stacks.values())).shape
    step = batch_size or auto_batch_size(height, width)
    results = {request: np.zeros((count, height, width), dtype=np.float32) for request in requests}
    reporter.start("synthesising", count)
    for start in range(0, count, step):
        images = {m: torch.from_numpy(np.ascontiguousarray(s[start : start + step])).unsqueeze(1).to(device)
                  .contiguous(memory_format=torch.channels_last) for m, s in stacks.items()}
        latents = model.encode(images)
        for subset, target in requests:
            prediction = model.decode_fused([latents[m] for m in subset], target)
            results[(subset, target)][start : start + step] = prediction[:, 0].float().cpu().numpy()
        reporter.advance(min(step, count - start))
    reporter.finish()
    for request in requests:
        outputs[request] = uncrop(np.moveaxis(results[request], 0, axis), box, mask.shape) * mask
    return outputs


def synthesize_arrays(model: SynthesisNet, inputs: dict[str, np.ndarray], mask: np.ndarray, targets: list[str],
                      device: torch.device, batch_size: int = 0, reporter: Reporter | None = None) -> dict[str, np.ndarray]:
    """Synthesise the targets from all the given inputs fused."""
    subset = tuple(inputs)
    results = synthesize_subsets(model, inputs, mask, [(subset, t) for t in targets], device, batch_size, reporter)
    return {t: results[(subset, t)] for t in targets}


def synthesize(inputs: dict[str, Path], targets: list[str], model_path: Path | None = None, device: str = "auto",
               batch_size: int = 0, reporter: Reporter | None = None) -> SynthesisResult:
    """Load and check the inputs, synthesise the targets, and return them with the reference input."""
    torch_device = resolve_device(device)
    model, _ = load_model(model_path, torch_device)
    config = model.config
    check_request(config.inputs, config.outputs, list(inputs), targets, model_path or "default model")
    ordered = [m for m in config.inputs if m in inputs]
    volumes = {m: load_volume(inputs[m]) for m in ordered}
    check_same_grid(list(volumes.values()))
    for volume in volumes.values():
        if not foreground_mask(volume.data).any():
            raise InputError(f"{volume.path}: the volume is empty (no voxel above zero)")
    normalised, mask, factors = normalise_inputs({m: v.data for m, v in volumes.items()})
    outputs = synthesize_arrays(model, normalised, mask, targets, torch_device, batch_size, reporter)
    return SynthesisResult(outputs=outputs, mask=mask, reference=volumes[ordered[0]], factors=factors,
                           input_paths=[v.path for v in volumes.values()])


def check_outputs(paths: list[Path], inputs: list[Path], force: bool) -> None:
    """Before any work: refuse to overwrite an input, an existing output without force, or an unwritable folder."""
    refuse_overwrite(paths, inputs, force)
    for path in paths:
        check_writable(Path(path), force)


def plan_outputs(model_path: Path, given: dict[str, Path], out: Path | None, target: str | None,
                 out_dir: Path | None) -> dict[str, Path]:
    """Which target goes to which file: --out (target from --target, the file name, or the only one missing),
    or --out-dir (every output of the model not given as input, as <dir>/<contrast>.nii.gz)."""
    config = load_checkpoint(model_path)["config"]
    check_request(config["inputs"], config["outputs"], list(given), [], model_path)
    missing = [m for m in config["outputs"] if m not in given]
    if (out is None) == (out_dir is None):
        raise InputError("give either --out FILE (one contrast) or --out-dir DIR (every missing contrast)")
    if out is not None:
        stem = out.name.split(".")[0].lower()
        if target:
            chosen = canonical_modality(target)
        elif stem in KNOWN_MODALITIES:
            chosen = stem
        elif len(missing) == 1:
            chosen = missing[0]
        else:
            raise InputError(f"{out}: say which contrast to write with --target (one of {', '.join(missing)})")
        check_request(config["inputs"], config["outputs"], list(given), [chosen], model_path)
        return {chosen: out}
    if not out_dir.is_dir():
        raise OutputError(f"{out_dir}: output folder does not exist")
    if not missing:
        raise InputError(f"{model_path}: every output of the model was given as input; nothing to synthesise")
    return {m: out_dir / f"{m}.nii.gz" for m in missing}


def write_outputs(result: SynthesisResult, paths: dict[str, Path], force: bool = False) -> list[Path]:
    """Write each synthesised target on the reference input's grid, atomically."""
    check_outputs(list(paths.values()), result.input_paths, force)
    return [save_like(result.outputs[t], result.reference, p, force=force) for t, p in paths.items()]
