"""Back to native space: put a volume that lies on a `mrimpute preprocess` grid onto one raw scan's own grid.

The preprocess manifest records each raw scan (path, sha256) and the transform from the reference scan's physical
space to that scan's. A volume on the preprocessed grid (the synthesis of `synth --native-ref`, or any file with
`to_native`) is resampled (linear) onto the raw scan's grid with the inverse transform and written with the raw
scan's header: same shape, affine, qform/sform and codes, pixdim; only the voxel type (float32) changes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.atomic import refuse_overwrite
from ..io.checksum import sha256_file
from ..io.nifti import Volume, canonical_affine, load_volume, save_like
from ..preprocess import spatial

MANIFEST_NAME = "manifest.json"


@dataclass
class NativeTarget:
    """One raw scan of a preprocess manifest and the transform from reference points to its points."""

    manifest: Path
    modality: str
    raw: Volume
    transform: object  # SimpleITK transform: preprocessed (reference) physical points -> raw scan points


def default_manifest(first_input: Path) -> Path:
    """`manifest.json` in the folder of the first input."""
    return Path(first_input).parent / MANIFEST_NAME


def read_manifest(path: Path) -> dict:
    """A preprocess manifest, or a one-line InputError when it is missing or not one."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: preprocess manifest not found (give --manifest PATH)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable preprocess manifest ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("inputs"), dict) \
            or not isinstance(manifest.get("outputs"), dict) or "reference" not in manifest:
        raise InputError(f"{path}: not a preprocess manifest (no inputs, outputs and reference)")
    return manifest


def check_preprocessed(manifest_path: Path, manifest: dict, inputs: list[Path]) -> None:
    """Refuse inputs that are not outputs of the preprocessing the manifest records."""
    written = {os.path.realpath(Path(manifest_path).parent / name) for name in manifest["outputs"].values()}
    for path in inputs:
        if os.path.realpath(path) not in written:
            raise InputError(f"{path}: not an output of the preprocessing recorded in {manifest_path} "
                             "(--native-ref needs inputs written by mrimpute preprocess)")


def open_target(manifest_path: str | Path, modality: str, inputs: list[Path] | None = None) -> NativeTarget:
    """Check the manifest, the modality, the raw scan (unchanged since preprocessing) and its transform.

    With `inputs`, they must be outputs of that preprocessing. Everything is checked before any work."""
    import SimpleITK as sitk

    manifest_path = Path(manifest_path)
    manifest = read_manifest(manifest_path)
    modality = modality.strip().lower()
    entry = manifest["inputs"].get(modality)
    if not isinstance(entry, dict) or "path" not in entry:
        raise InputError(f"{manifest_path}: has no input {modality!r} (has {', '.join(manifest['inputs']) or 'none'})")
    if inputs is not None:
        check_preprocessed(manifest_path, manifest, inputs)
    raw_path = Path(entry["path"])
    raw = load_volume(raw_path)
    if entry.get("sha256") and sha256_file(raw_path) != entry["sha256"]:
        raise InputError(f"{raw_path}: changed since it was preprocessed (sha256 differs from {manifest_path})")
    if modality == manifest["reference"]:
        transform = sitk.Transform(3, sitk.sitkIdentity)
    else:
        try:
            transform_path = manifest_path.parent / manifest["transforms"][modality]["path"]
        except (KeyError, TypeError):
            raise InputError(f"{manifest_path}: no transform recorded for {modality!r}") from None
        try:
            transform = sitk.ReadTransform(str(transform_path)).GetInverse()
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
            raise InputError(f"{transform_path}: unreadable or not invertible transform ({reason})") from None
    return NativeTarget(manifest_path, modality, raw, transform)


def resample_to_native(data_ras: np.ndarray, grid: Volume, target: NativeTarget) -> np.ndarray:
    """A RAS+ array on `grid` (a volume on the preprocessed grid) resampled onto the raw scan's RAS+ grid."""
    image = spatial.image_from_array(np.asarray(data_ras, dtype=np.float32), canonical_affine(grid))
    native_grid = spatial.image_from_array(target.raw.data, canonical_affine(target.raw))
    return spatial.array_from_image(spatial.resample(image, native_grid, target.transform))


def write_native(data_ras: np.ndarray, grid: Volume, target: NativeTarget, out_path: str | Path,
                 force: bool = False, descrip: str | None = None) -> Path:
    """Write a RAS+ array on `grid` onto the raw scan's grid, with the raw scan's header (float32 voxels); the
    caller has refused overwriting the raw scan (to_native, or synth's plan with the raw scan among its inputs)."""
    return save_like(resample_to_native(data_ras, grid, target), target.raw, out_path, force=force, descrip=descrip)


def to_native(volume_path: str | Path, manifest_path: str | Path, modality: str, out_path: str | Path,
              force: bool = False) -> Path:
    """Resample a volume file on the preprocessed grid back onto the original grid of one input (linear)."""
    out_path = Path(out_path)
    target = open_target(manifest_path, modality)
    refuse_overwrite([out_path], [target.raw.path, Path(volume_path)], force)
    volume = load_volume(volume_path)
    return write_native(volume.data, volume, target, out_path, force)


def plan_native(native_ref: str | None, manifest: Path | None, inputs: dict[str, Path],
                unsupported: dict[str, object] | None = None) -> NativeTarget | None:
    """`synth --native-ref MODALITY [--manifest PATH]`: the raw scan to write on, checked before any synthesis.

    The manifest defaults to `manifest.json` beside the first input; every input must be a preprocess output.
    Options in `unsupported` (name -> value) that are set are refused with --native-ref."""
    if native_ref is None:
        if manifest is not None:
            raise InputError(f"{manifest}: --manifest applies only with --native-ref MODALITY")
        return None
    given = [name for name, value in (unsupported or {}).items() if value is not None]
    if given:
        raise InputError(f"--native-ref {native_ref}: cannot be combined with {', '.join(given)} (those maps stay "
                         "on the preprocessed grid)")
    if not inputs:
        raise InputError("give at least one input volume (e.g. --t1 t1.nii.gz)")
    paths = list(inputs.values())
    return open_target(manifest or default_manifest(paths[0]), native_ref, paths)


def write_native_outputs(outputs: dict[str, np.ndarray], grid: Volume, paths: dict[str, Path], target: NativeTarget,
                         force: bool = False, inputs: list[str] | None = None) -> list[Path]:
    """Write each synthesised target (RAS+ on `grid`) onto the raw scan's grid, atomically (descrip: 'mrimpute
    synthetic <target> from <inputs>' when the inputs are given); the plan checked the paths, the raw scan among
    the files never overwritten."""
    from ..io.sidecar import synthetic_descrip

    return [write_native(outputs[name], grid, target, path, force,
                         synthetic_descrip(name, inputs) if inputs is not None else None)
            for name, path in paths.items()]
