"""A seeded synthetic subject for tests, demos of the API and smoke checks: concentric tissue classes whose
intensities differ per contrast, written as NIfTI on an oblique, anisotropic grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

# grey, white, lesion intensity (x500) of each contrast
CONTRASTS = {"t1": (0.3, 0.8, 1.0), "t1c": (0.3, 0.9, 1.0), "t2": (1.0, 0.6, 0.4), "flair": (0.2, 0.9, 0.7)}


def oblique_affine(codes: str = "RAS") -> np.ndarray:
    """A rotated, anisotropic voxel-to-world matrix whose nearest orientation is `codes`."""
    angle = np.deg2rad(7.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    flips = np.diag([1.0 if c in "RAS" else -1.0 for c in codes])
    order = {"RL": 0, "LR": 0, "AP": 1, "PA": 1, "SI": 2, "IS": 2}
    permutation = np.zeros((3, 3))
    for voxel_axis, code in enumerate(codes):
        world_axis = next(v for k, v in order.items() if code in k)
        permutation[world_axis, voxel_axis] = 1.0
    affine = np.eye(4)
    affine[:3, :3] = rotation @ permutation @ flips @ np.diag([1.1, 0.9, 2.0])
    affine[:3, 3] = [-20.0, 15.0, 5.0]
    return affine


def phantom(shape: tuple[int, int, int] = (40, 36, 12), seed: int = 0) -> dict[str, np.ndarray]:
    """Concentric tissue classes (background, 'grey', 'white', 'lesion') with modality-specific contrast."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    radius = np.sqrt((grid[0] / 0.8) ** 2 + (grid[1] / 0.75) ** 2 + (grid[2] / 1.4) ** 2)
    labels = np.zeros(shape, dtype=np.int8)
    labels[radius < 0.9] = 1
    labels[radius < 0.55] = 2
    labels[(np.abs(grid[0] - 0.2) < 0.15) & (np.abs(grid[1]) < 0.15)] = 3
    labels[radius >= 0.9] = 0
    volumes = {}
    for name, (grey, white, lesion) in CONTRASTS.items():
        values = np.array([0.0, grey, white, lesion], dtype=np.float32) * 500
        volume = values[labels] * (1 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
        volumes[name] = np.where(labels > 0, volume, 0).astype(np.float32)
    volumes["lesion"] = (labels == 3).astype(np.uint8)
    return volumes


def write_subject(folder: Path, codes: str = "RAS", dtype=np.float32, seed: int = 0,
                  shape=(40, 36, 12)) -> dict[str, Path]:
    """Write a phantom subject as <folder>/<modality>.nii.gz (t1, t1c, t2, flair, lesion) on an oblique grid."""
    folder.mkdir(parents=True, exist_ok=True)
    affine = oblique_affine(codes)
    paths = {}
    for name, data in phantom(shape, seed).items():
        image = nib.Nifti1Image(data.astype(dtype if name != "lesion" else np.uint8), affine)
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=2)
        paths[name] = folder / f"{name}.nii.gz"
        nib.save(image, paths[name])
    return paths
