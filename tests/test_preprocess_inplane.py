"""`preprocess --inplane`: which axis keeps the reference's slices (issue 16).

A thick-slice reference keeps its thickest axis; an isotropic or nearly isotropic one (the ISLES 2 mm DWI) has no
slice axis of its own, so the slices are those of its voxel axis closest to superior-inferior (axial, as a 2D axial
model wants), whichever position that axis has in the file."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.preprocess import spatial

RUNNER = CliRunner()


def _grid(spacing: tuple[float, float, float], columns: np.ndarray, size: tuple[int, int, int] = (40, 44, 36)
          ) -> sitk.Image:
    """An empty SimpleITK grid whose voxel axes point along `columns` (LPS unit vectors, one per column)."""
    image = sitk.Image(list(size), sitk.sitkUInt8)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in np.asarray(columns, dtype=float).ravel()])
    return image


def _tilted(degrees: float) -> np.ndarray:
    """Axial voxel axes (L, P, S) tilted about left-right by `degrees`."""
    t = np.deg2rad(degrees)
    return np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])


SAGITTAL_FIRST = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]])  # voxel axis 0 runs along S, axis 2 along L


@pytest.mark.parametrize("spacing, columns, expected", [
    ((2.0, 2.0, 2.0), np.eye(3), 2),                      # isotropic, axial storage: the third axis
    ((2.0, 2.0, 2.0), SAGITTAL_FIRST, 0),                 # isotropic, S-I stored first: the first axis
    ((2.0, 2.0, 2.0), _tilted(25.0), 2),                  # isotropic and oblique: the axis nearest S-I
    ((1.0, 1.1, 1.0), SAGITTAL_FIRST, 0),                 # within 25%: still the orientation's axial axis
    ((0.9, 0.9, 6.0), np.eye(3), 2),                      # thick axial slices: the thickest axis
    ((5.0, 0.45, 0.45), SAGITTAL_FIRST, 0),               # thick slices stored first
    ((1.0, 1.0, 1.5), SAGITTAL_FIRST, 2),                 # clearly thick sagittal slices are kept as they are
])
def test_slice_axis(spacing, columns, expected) -> None:
    assert spatial.slice_axis(_grid(spacing, columns)) == expected


def test_isotropic_reference_keeps_its_axial_slices() -> None:
    reference = _grid((2.0, 2.0, 2.0), SAGITTAL_FIRST, (36, 44, 40))
    grid = spatial.inplane_grid(reference, 1.0)
    assert grid.GetSpacing() == (2.0, 1.0, 1.0)
    assert grid.GetSize() == (36, 88, 80)  # the 36 axial slices kept, 1 mm in-plane
    assert grid.GetDirection() == reference.GetDirection()


def test_preprocess_on_an_isotropic_dwi_reference(tmp_path: Path) -> None:
    """The CLI on a 2 mm isotropic LAS reference (the ISLES DWI's layout): 1 x 1 x 2 mm voxels, the same number of
    axial slices at the same positions."""
    shape = (48, 56, 40)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    data = np.where(x ** 2 + y ** 2 + z ** 2 < 0.6, 600.0, 0.0).astype(np.float32)
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (48.0, -56.0, -40.0)
    dwi = tmp_path / "dwi.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), dwi)
    result = RUNNER.invoke(app, ["preprocess", "--ref", f"dwi={dwi}", "--inplane", "1", "--threads", "1",
                                 "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    out = nib.load(tmp_path / "out" / "dwi.nii.gz")
    assert np.allclose(out.header.get_zooms(), (1.0, 1.0, 2.0))
    assert out.shape == (96, 112, 40)
    slice_z = lambda image, k: (image.affine @ np.r_[0, 0, k, 1])[2]  # noqa: E731
    assert all(np.isclose(slice_z(out, k), slice_z(nib.load(dwi), k)) for k in (0, 17, 39))
