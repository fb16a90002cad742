"""`mrimpute preprocess`: registration onto a reference, outputs, manifest, refusals, and `to_native`."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import typer
from typer.testing import CliRunner

from mrimpute.cli.preprocess_cmd import preprocess_command
from mrimpute.errors import InputError, OutputError
from mrimpute.io.checksum import sha256_file as sha256
from mrimpute.phantom import write_subject
from mrimpute.pipeline.preprocess import PreprocessOptions, preprocess
from mrimpute.preprocess import brainmask, rigid, spatial
from mrimpute.runtime.native import to_native

SHAPE = (48, 44, 16)
ANGLE_DEG = 6.0
SHIFT_RAS = np.array([4.0, -3.0, 2.5])


def _motion() -> np.ndarray:
    """A rigid motion (RAS, 4x4) about the world origin: rotation about an oblique axis and a shift."""
    axis = np.array([0.3, 0.2, 1.0]) / np.linalg.norm([0.3, 0.2, 1.0])
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.deg2rad(ANGLE_DEG)
    motion = np.eye(4)
    motion[:3, :3] = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    motion[:3, 3] = SHIFT_RAS
    return motion


def _moved_and_resampled(source: Path, target: Path, voxel_mm=(1.3, 1.2, 1.6), motion: np.ndarray | None = None,
                         lps: bool = False, dtype=np.float32, codes: tuple[int, int] = (1, 1)) -> None:
    """source resampled onto a grid of another voxel size, then moved by `motion` (default _motion()) through its
    affine; `lps` stores the voxels in the opposite order along the first two axes (another orientation)."""
    image = nib.load(source)
    original = spatial.image_from_array(np.asarray(image.dataobj, dtype=np.float32), image.affine)
    grid = sitk.Image([int(round(n * s / v)) + 4 for n, s, v in
                       zip(original.GetSize(), original.GetSpacing(), voxel_mm)], sitk.sitkFloat32)
    grid.SetSpacing(voxel_mm)
    grid.SetDirection(original.GetDirection())
    grid.SetOrigin(np.array(original.GetOrigin()) - 2 * np.array(voxel_mm))
    data = spatial.array_from_image(spatial.resample(original, grid))
    affine = (_motion() if motion is None else motion) @ spatial.affine_of(grid)
    if lps:
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        flip[:2, 3] = [data.shape[0] - 1, data.shape[1] - 1]
        data, affine = data[::-1, ::-1], affine @ flip
    out = nib.Nifti1Image(np.ascontiguousarray(data).astype(dtype), affine)
    out.set_qform(affine, code=codes[0])
    out.set_sform(affine, code=codes[1])
    nib.save(out, target)


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("pre")
    paths = write_subject(folder / "in", shape=SHAPE)
    moved = folder / "in" / "t1_moved.nii.gz"
    _moved_and_resampled(paths["t1"], moved)
    inputs = {"flair": paths["flair"], "t1": moved, "t2": paths["t2"]}
    before = {name: sha256(p) for name, p in inputs.items()}
    result = preprocess(inputs, "flair", folder / "out", PreprocessOptions(threads=1))
    return {"folder": folder, "paths": paths, "inputs": inputs, "before": before, "result": result}


def test_recovers_known_rigid_motion(session) -> None:
    out = session["folder"] / "out"
    found = sitk.ReadTransform(str(out / "transforms" / "t1_to_flair.tfm"))
    # tissue at RAS x now sits at motion(x); in LPS: flip M's rotation and shift
    flip = np.diag([-1.0, -1.0, 1.0])
    motion = _motion()
    truth = sitk.AffineTransform(3)
    truth.SetMatrix((flip @ motion[:3, :3] @ flip).ravel().tolist())
    truth.SetTranslation((flip @ motion[:3, 3]).tolist())
    reference = nib.load(session["paths"]["flair"])
    fixed = spatial.image_from_array(np.asarray(reference.dataobj, dtype=np.float32), reference.affine)
    points = spatial.mask_points(brainmask.head_mask(fixed), 500)
    error = spatial.displacement(found, truth, points)
    nothing = spatial.displacement(sitk.Transform(3, sitk.sitkIdentity), truth, points)
    assert nothing.mean() > 3.0  # the case is not trivial
    assert error.mean() < 0.9, error.mean()  # less than one voxel (0.9 to 2 mm)
    print(f"recovered motion: mean error {error.mean():.3f} mm, max {error.max():.3f} mm")


def test_outputs_have_the_reference_header_and_inputs_are_untouched(session) -> None:
    out = session["folder"] / "out"
    reference = nib.load(session["paths"]["flair"])
    for name in ("flair", "t1", "t2", "brainmask"):
        image = nib.load(out / f"{name}.nii.gz")
        assert image.shape == reference.shape
        assert np.allclose(image.affine, reference.affine, atol=1e-5)
        assert np.allclose(image.get_qform(), reference.get_qform(), atol=1e-5)
        assert int(image.header["qform_code"]) == int(reference.header["qform_code"])
        assert int(image.header["sform_code"]) == int(reference.header["sform_code"])
    mask = nib.load(out / "brainmask.nii.gz").get_fdata()
    assert set(np.unique(mask)) <= {0.0, 1.0} and mask.mean() > 0.1
    # the moved T1 lands on the phantom's own T1 after registration
    t1_native = nib.load(session["paths"]["t1"]).get_fdata()
    t1_out = nib.load(out / "t1.nii.gz").get_fdata()
    inside = t1_native > 0
    assert np.corrcoef(t1_native[inside], t1_out[inside])[0, 1] > 0.8
    assert {name: sha256(p) for name, p in session["inputs"].items()} == session["before"]


def test_manifest_has_checksums_transforms_and_timings(session) -> None:
    manifest = json.loads((session["folder"] / "out" / "manifest.json").read_text())
    assert manifest["reference"] == "flair"
    for name, path in session["inputs"].items():
        assert manifest["inputs"][name]["sha256"] == session["before"][name]
        assert Path(manifest["inputs"][name]["path"]) == path.resolve()
    assert manifest["transforms"]["t1"]["path"] == "transforms/t1_to_flair.tfm"
    assert set(manifest["registration"]) == {"t1", "t2"}
    assert manifest["registration"]["t1"]["metric"] < -0.3
    assert {"load+reorient", "register:t1", "register:t2", "resample", "mask", "write", "total"} <= \
        set(manifest["seconds"])
    assert "register-rigid" in manifest["steps"] and "not a skull strip" in manifest["mask"]["method"]
    assert manifest["mrimpute_version"]


def test_existing_outputs_refused_without_force(session) -> None:
    with pytest.raises(OutputError, match="use --force"):
        preprocess(session["inputs"], "flair", session["folder"] / "out", PreprocessOptions(threads=1))


@pytest.mark.parametrize("kind", ["noise", "other object"])
def test_unrelated_image_refused(session, tmp_path: Path, kind: str) -> None:
    reference = nib.load(session["paths"]["flair"])
    rng = np.random.default_rng(3)
    if kind == "noise":
        data = rng.uniform(0, 500, SHAPE).astype(np.float32)
    else:  # a small bright cube in a corner of the field of view
        data = np.zeros(SHAPE, np.float32)
        data[2:12, 2:12, 1:6] = 400 + 20 * rng.standard_normal((10, 10, 5))
    bad = tmp_path / "unrelated.nii.gz"
    nib.save(nib.Nifti1Image(data, reference.affine), bad)
    with pytest.raises(InputError, match="unrelated.nii.gz: cannot be the same subject"):
        preprocess({"flair": session["paths"]["flair"], "t2": bad}, "flair", tmp_path / "out",
                   PreprocessOptions(threads=1))
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_to_native_round_trip(session, tmp_path: Path) -> None:
    out = session["folder"] / "out"
    native_path = session["inputs"]["t1"]
    back = to_native(out / "t1.nii.gz", out / "manifest.json", "t1", tmp_path / "t1_native.nii.gz")
    native, result = nib.load(native_path), nib.load(back)
    assert result.shape == native.shape
    strip = {"datatype", "bitpix", "scl_slope", "scl_inter", "vox_offset", "cal_min", "cal_max"}  # own range
    for key in native.header:
        if key not in strip:
            assert np.array_equal(np.asarray(native.header[key]), np.asarray(result.header[key])), key
    assert result.get_data_dtype() == np.float32
    original, returned = native.get_fdata(), result.get_fdata()
    both = (original > 50) & (returned > 50)
    assert both.sum() > 0.5 * (original > 50).sum()
    assert np.corrcoef(original[both], returned[both])[0, 1] > 0.8
    with pytest.raises(OutputError, match="use --force"):
        to_native(out / "t1.nii.gz", out / "manifest.json", "t1", back)
    with pytest.raises(InputError, match="has no input 'pd'"):
        to_native(out / "t1.nii.gz", out / "manifest.json", "pd", tmp_path / "x.nii.gz")


def test_compass_search_finds_the_minimum_of_a_bowl() -> None:
    centre = np.array([3.3, -7.1, 0.4, 12.0, -0.6, 5.5])
    calls = []

    def cost(x: np.ndarray) -> float:
        calls.append(1)
        return float(np.sum((x - centre) ** 2 * np.arange(1, 7)))

    found, value = rigid.compass_search(cost, np.zeros(6), first_step=4.0, last_step=0.05)
    assert np.abs(found - centre).max() <= 0.05 and value < 0.01
    assert len(calls) < 600


def test_mutual_information_is_best_at_the_true_alignment(session) -> None:
    image = nib.load(session["paths"]["flair"])
    fixed = spatial.image_from_array(np.asarray(image.dataobj, dtype=np.float32), image.affine)
    moving = spatial.image_from_array(np.asarray(nib.load(session["paths"]["t2"]).dataobj, dtype=np.float32),
                                      image.affine)
    cost = rigid.MutualInformation(fixed, moving, rigid.level_mask(fixed, None), None, seed=0)
    start = rigid.initial_transform(fixed, moving, "HEADER")
    aligned = cost(start)
    for offset in np.eye(6) * 2.0:
        assert cost(rigid.moved(start, offset)) > aligned
        assert cost(rigid.moved(start, -offset)) > aligned
    assert aligned < -0.3
    empty = rigid.moved(start, np.array([0, 0, 0, 500.0, 0, 0]))  # no overlap at all: no information
    assert cost(empty) == 0.0


def test_isotropic_spacing(session, tmp_path: Path) -> None:
    paths = session["paths"]
    given_mask = tmp_path / "mask.nii.gz"  # a phantom has no brain for deepbet to find: the mask is given
    reference = nib.load(paths["flair"])
    nib.save(nib.Nifti1Image((reference.get_fdata() > 0).astype(np.uint8), reference.affine), given_mask)
    preprocess({"flair": paths["flair"], "t2": paths["t2"]}, "flair", tmp_path / "iso",
               PreprocessOptions(spacing=1.5, threads=1, skull_strip=True, mask=given_mask))
    image = nib.load(tmp_path / "iso" / "t2.nii.gz")
    assert np.allclose(image.header.get_zooms()[:3], 1.5, atol=1e-4)
    mask = nib.load(tmp_path / "iso" / "brainmask.nii.gz").get_fdata() > 0
    assert image.shape == mask.shape and np.all(image.get_fdata()[~mask] == 0)


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("preprocess")(preprocess_command)

    @app.callback()
    def _root() -> None:
        """test app"""

    return app


def test_cli_run_and_error(session, tmp_path: Path) -> None:
    paths = session["paths"]
    runner = CliRunner()
    args = ["preprocess", "--ref", f"flair={paths['flair']}", "--t1", str(session["inputs"]["t1"]),
            "--out-dir", str(tmp_path / "cli"), "--threads", "1"]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / "t1.nii.gz").exists() and (tmp_path / "cli" / "transforms" / "t1_to_flair.tfm").exists()
    again = runner.invoke(_app(), args)
    assert again.exit_code == 1 and "use --force" in again.output and "Traceback" not in again.output
    missing = runner.invoke(_app(), ["preprocess", "--ref", "flair", "--out-dir", str(tmp_path / "x")])
    assert missing.exit_code == 1 and "--ref flair" in missing.output


def test_n4_affine_and_given_mask(session, tmp_path: Path) -> None:
    paths = session["paths"]
    given_mask = tmp_path / "mask.nii.gz"
    reference = nib.load(paths["flair"])
    nib.save(nib.Nifti1Image((reference.get_fdata() > 0).astype(np.uint8), reference.affine), given_mask)
    result = preprocess({"flair": paths["flair"], "t1": session["inputs"]["t1"]}, "flair", tmp_path / "n4",
                        PreprocessOptions(n4=True, affine=True, mask=given_mask, skull_strip=True, threads=1))
    manifest = json.loads(result.manifest.read_text())
    assert {"n4", "register-affine", "skull-strip (given mask)", "mask"} <= set(manifest["steps"])
    assert manifest["mask"]["method"].startswith("given") and manifest["mask"]["sha256"] == sha256(given_mask)
    assert {"n4:flair", "n4:t1"} <= set(manifest["seconds"])
    out = nib.load(tmp_path / "n4" / "t1.nii.gz").get_fdata()
    assert np.all(out[reference.get_fdata() <= 0] == 0) and out.max() > 100
