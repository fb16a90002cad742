"""`preprocess` on clinical-style sessions: thick (6 mm) slices, a low-resolution DWI with its ADC map on one grid,
`--inplane`, and the modality table's `--dwi` / `--adc` options.

The scans are drawn from an analytic head (scalp, brain, white matter, a few asymmetric blobs) at each grid's voxel
centres, averaged over the slice thickness (a thick slice integrates its slab), so the truth is known exactly."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.pipeline.preprocess import PreprocessOptions, preprocess
from mrimpute.preprocess import brainmask, spatial

RUNNER = CliRunner()
ANGLE_DEG, AXIS, SHIFT = 5.0, (0.4, -0.3, 1.0), (3.0, -4.0, 2.5)  # the moving scans' rigid motion (RAS, mm)
# tissue values per contrast: scalp, brain, white matter, blob A, blob B (DWI/ADC: no scalp, as fat-suppressed EPI)
CONTRASTS = {"t1": (300, 500, 800, 1100, 150), "t2": (250, 700, 450, 300, 1200),
             "dwi": (0, 600, 450, 1300, 500), "adc": (0, 800, 700, 300, 2500)}
BLOBS = (((18.0, 12.0, 6.0), 9.0), ((-14.0, -22.0, -10.0), 7.0))


def _head(points: np.ndarray, contrast: str) -> np.ndarray:
    """The analytic head's intensity at RAS points (n, 3)."""
    scalp, brain, white, blob_a, blob_b = CONTRASTS[contrast]
    x, y, z = points.T
    radius = np.sqrt((x / 62) ** 2 + (y / 75) ** 2 + (z / 55) ** 2)
    values = np.where(radius < 1.0, scalp, 0.0)
    values = np.where(radius < 0.88, brain, values)
    values = np.where((radius < 0.5) & (x > -30), white, values)  # a lopsided white matter
    for (centre, size), value in zip(BLOBS, (blob_a, blob_b)):
        values = np.where(np.linalg.norm(points - np.array(centre), axis=1) < size, value, values)
    return values.astype(np.float32)


def _motion() -> np.ndarray:
    axis = np.array(AXIS) / np.linalg.norm(AXIS)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.deg2rad(ANGLE_DEG)
    motion = np.eye(4)
    motion[:3, :3] = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    motion[:3, 3] = SHIFT
    return motion


def _write_scan(path: Path, contrast: str, voxel: tuple[float, float, float], tilt_deg: float = 0.0,
                motion: np.ndarray | None = None) -> Path:
    """An axial scan of the head (moved by `motion`) on a grid of `voxel` mm covering 150 x 170 x 126 mm, its slices
    tilted by tilt_deg about the left-right axis; each voxel the mean of 4 samples across its slice."""
    shape = [int(round(extent / v)) for extent, v in zip((150, 170, 126), voxel)]
    tilt = np.deg2rad(tilt_deg)
    rotation = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(voxel)
    affine[:3, 3] = -affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    index = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    inverse = np.linalg.inv(motion if motion is not None else np.eye(4))
    data = np.zeros(len(index), np.float32)
    for offset in np.linspace(-0.375, 0.375, 4):  # across the slab
        world = (index + [0, 0, offset]) @ affine[:3, :3].T + affine[:3, 3]
        data += _head(world @ inverse[:3, :3].T + inverse[:3, 3], contrast) / 4
    noise = np.random.default_rng(sum(map(ord, path.name))).normal(0, 8, data.shape).astype(np.float32)
    image = nib.Nifti1Image((data + np.abs(noise)).reshape(shape), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)
    return path


def _truth_lps() -> sitk.AffineTransform:
    flip = np.diag([-1.0, -1.0, 1.0])
    motion = _motion()
    truth = sitk.AffineTransform(3)
    truth.SetMatrix((flip @ motion[:3, :3] @ flip).ravel().tolist())
    truth.SetTranslation((flip @ motion[:3, 3]).tolist())
    return truth


def _errors(found: sitk.Transform, reference: Path) -> tuple[float, float]:
    """Mean displacement (mm) over the reference's head and the residual rotation (degrees) from the truth."""
    image = nib.load(reference)
    fixed = spatial.image_from_array(np.asarray(image.dataobj, dtype=np.float32), image.affine)
    points = spatial.mask_points(brainmask.head_mask(fixed), 1000)
    distance = spatial.displacement(found, _truth_lps(), points).mean()
    origin = np.array(found.TransformPoint((0.0, 0.0, 0.0)))
    matrix = np.stack([np.array(found.TransformPoint(tuple(e))) - origin for e in np.eye(3)], axis=1)
    residual = matrix @ np.array(_truth_lps().GetMatrix()).reshape(3, 3).T
    angle = np.rad2deg(np.arccos(np.clip((np.trace(residual) - 1) / 2, -1, 1)))
    return float(distance), float(angle)


@pytest.fixture(scope="module")
def clinical(tmp_path_factory) -> dict:
    """A T1 reference (0.9 x 0.9 x 6 mm), a T2 (0.45 x 0.45 x 6 mm) and a DWI + ADC (1.2 x 1.2 x 6 mm, one grid,
    slices tilted 20 degrees) of the head moved by _motion(); preprocessed with --inplane 1 and --dwi/--adc."""
    folder = tmp_path_factory.mktemp("clinical")
    motion = _motion()
    paths = {"t1": _write_scan(folder / "t1.nii.gz", "t1", (0.9, 0.9, 6.0)),
             "t2": _write_scan(folder / "t2.nii.gz", "t2", (0.6, 0.6, 6.0), motion=motion),
             "dwi": _write_scan(folder / "dwi.nii.gz", "dwi", (1.2, 1.2, 6.0), tilt_deg=20, motion=motion),
             "adc": _write_scan(folder / "adc.nii.gz", "adc", (1.2, 1.2, 6.0), tilt_deg=20, motion=motion)}
    out = folder / "out"
    result = RUNNER.invoke(app, ["preprocess", "--ref", "t1", "--t1", str(paths["t1"]), "--t2", str(paths["t2"]),
                                 "--dwi", str(paths["dwi"]), "--adc", str(paths["adc"]), "--inplane", "1",
                                 "--out-dir", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    return {"folder": folder, "paths": paths, "out": out,
            "manifest": json.loads((out / "manifest.json").read_text())}


def test_thick_slice_t2_recovered_within_1_mm_and_1_5_degrees(clinical) -> None:
    found = sitk.ReadTransform(str(clinical["out"] / "transforms" / "t2_to_t1.tfm"))
    distance, angle = _errors(found, clinical["paths"]["t1"])
    assert _errors(sitk.Transform(3, sitk.sitkIdentity), clinical["paths"]["t1"])[0] > 4.0  # not trivial
    # sub-millimetre on average; the tilt about an axis within the 6 mm slices is the least determined part
    # (0.2-1.1 degrees over noise realisations of this phantom)
    assert distance < 1.0 and angle < 1.5, (distance, angle)


def test_dwi_recovered_and_adc_registered_through_it(clinical) -> None:
    out, manifest = clinical["out"], clinical["manifest"]
    dwi = sitk.ReadTransform(str(out / "transforms" / "dwi_to_t1.tfm"))
    distance, angle = _errors(dwi, clinical["paths"]["t1"])
    assert distance < 1.0 and angle < 1.0, (distance, angle)
    adc = sitk.ReadTransform(str(out / "transforms" / "adc_to_t1.tfm"))
    assert adc.GetParameters() == dwi.GetParameters()
    registration = manifest["registration"]
    assert registration["adc"]["init"] == "via dwi (same grid)"
    assert registration["dwi"]["overlap_measure"] == "inside the reference's head"  # a DWI shows no scalp
    assert registration["dwi"]["overlap"] > 0.9 and registration["t2"]["overlap"] > 0.9


def test_inplane_grid_keeps_the_reference_slices(clinical) -> None:
    reference = nib.load(clinical["paths"]["t1"])
    out = nib.load(clinical["out"] / "dwi.nii.gz")
    assert np.allclose(out.header.get_zooms(), (1.0, 1.0, 6.0))
    assert out.shape[2] == reference.shape[2]
    assert out.shape[:2] == tuple(int(np.ceil(n * 0.9)) for n in reference.shape[:2])
    # the slice centres lie where the reference's do
    centre = lambda image: image.affine @ np.r_[(np.array(image.shape) - 1) / 2, 1]  # noqa: E731
    assert np.allclose(centre(out), centre(reference), atol=0.5)
    assert np.allclose(out.affine[:3, 2], reference.affine[:3, 2])
    assert clinical["manifest"]["grid"]["voxel_mm"] == [1.0, 1.0, 6.0]
    assert clinical["manifest"]["inplane"] == 1.0


def test_adc_on_its_own_grid_is_registered_itself(clinical, tmp_path: Path) -> None:
    paths = clinical["paths"]
    own = _write_scan(tmp_path / "adc_own.nii.gz", "adc", (1.5, 1.5, 5.0), motion=_motion())
    result = preprocess({"t1": paths["t1"], "dwi": paths["dwi"], "adc": own}, "t1", tmp_path / "out",
                        PreprocessOptions(threads=1))
    registration = json.loads(result.manifest.read_text())["registration"]
    assert not registration["adc"]["init"].startswith("via")
    distance, angle = _errors(sitk.ReadTransform(str(result.outputs["transform:adc"])), paths["t1"])
    assert distance < 1.5 and angle < 1.5, (distance, angle)


def test_noise_as_dwi_is_refused(clinical, tmp_path: Path) -> None:
    reference = nib.load(clinical["paths"]["dwi"])
    noise = np.random.default_rng(1).uniform(0, 500, reference.shape).astype(np.float32)
    bad = tmp_path / "noise_dwi.nii.gz"
    nib.save(nib.Nifti1Image(noise, reference.affine), bad)
    result = RUNNER.invoke(app, ["preprocess", "--ref", f"t1={clinical['paths']['t1']}", "--dwi", str(bad),
                                 "--out-dir", str(tmp_path / "out"), "--threads", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "noise_dwi.nii.gz: cannot be the same subject" in result.output


def test_spacing_and_inplane_exclude_each_other(clinical, tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["preprocess", "--ref", f"t1={clinical['paths']['t1']}", "--spacing", "1",
                                 "--inplane", "1", "--out-dir", str(tmp_path / "out")])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and "--inplane" in lines[0]
