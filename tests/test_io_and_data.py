"""NIfTI round trips, grid checks, normalisation, cropping, modality names and subject discovery."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mrimpute.data.intensity import bounding_box, crop_padded, foreground_mask, normalise, paste
from mrimpute.data.subjects import discover_subjects, load_subject
from mrimpute.errors import GridMismatchError, InputError
from mrimpute.io.nifti import check_same_grid, load_volume, save_like
from mrimpute.modalities import all_subsets, canonical_modality, parse_modality_list

from conftest import assert_same_header, oblique_affine, write_subject


@pytest.mark.parametrize("codes", ["RAS", "LPS", "LAS", "PIR"])
def test_orientation_round_trip_keeps_header_and_data(tmp_path: Path, codes: str) -> None:
    paths = write_subject(tmp_path / "s", codes=codes, dtype=np.int16)
    volume = load_volume(paths["t1"])
    assert volume.orientation == codes
    out = save_like(volume.data, volume, tmp_path / "out.nii.gz")
    original, written = nib.load(paths["t1"]), nib.load(out)
    assert_same_header(written, original)
    assert written.get_data_dtype() == np.float32
    assert np.array_equal(np.asarray(written.dataobj), np.asarray(original.dataobj).astype(np.float32))


def test_canonical_axes_are_ras(tmp_path: Path) -> None:
    ras = load_volume(write_subject(tmp_path / "a", codes="RAS")["t2"]).data
    lps = load_volume(write_subject(tmp_path / "b", codes="LPS")["t2"]).data
    assert ras.shape == lps.shape  # same phantom, each reordered to RAS+ (the phantom is symmetric in shape only)
    image = nib.load(tmp_path / "b" / "t2.nii.gz")
    assert np.array_equal(lps, np.asarray(image.dataobj)[::-1, ::-1, :])


def test_trailing_singleton_axis_is_squeezed(tmp_path: Path) -> None:
    data = np.ones((20, 18, 4, 1), dtype=np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii.gz")
    assert load_volume(tmp_path / "v.nii.gz").data.shape == (20, 18, 4)


def test_grid_check_names_both_files(tmp_path: Path) -> None:
    a = write_subject(tmp_path / "a")
    b = write_subject(tmp_path / "b", shape=(40, 36, 10))
    with pytest.raises(GridMismatchError, match="b/t2.nii.gz.*a/t1.nii.gz"):
        check_same_grid([load_volume(a["t1"]), load_volume(b["t2"])])
    shifted = nib.load(a["t2"])
    affine = shifted.affine.copy()
    affine[0, 3] += 0.5
    nib.save(nib.Nifti1Image(np.asarray(shifted.dataobj), affine), tmp_path / "shift.nii.gz")
    with pytest.raises(GridMismatchError, match="affine"):
        check_same_grid([load_volume(a["t1"]), load_volume(tmp_path / "shift.nii.gz")])


def test_normalise_divides_by_brain_mean() -> None:
    data = np.zeros((4, 4, 4), dtype=np.float32)
    data[1:3, 1:3, 1:3] = [[[2, 4], [6, 8]], [[2, 4], [6, -1]]]
    mask = foreground_mask(data)
    assert mask.sum() == 7  # the negative voxel is background
    normalised, factor = normalise(data, mask)
    assert factor == pytest.approx((2 + 4 + 6 + 8 + 2 + 4 + 6) / 7)
    assert normalised[mask].mean() == pytest.approx(1.0)
    assert normalised.min() == 0.0 and normalised[~mask].max() == 0.0
    with pytest.raises(ValueError):
        normalise(np.zeros((3, 3, 3)), np.zeros((3, 3, 3), dtype=bool))


def test_bounding_box_multiple_of_four_and_crop_paste_round_trip() -> None:
    mask = np.zeros((20, 30, 5), dtype=bool)
    mask[3:10, 2:29, :] = True
    box = bounding_box(mask, (0, 1), multiple=4)
    assert (box[0].stop - box[0].start) % 4 == 0 and (box[1].stop - box[1].start) % 4 == 0
    data = np.random.default_rng(0).random(mask.shape).astype(np.float32) * mask
    cropped = crop_padded(data, box)
    assert cropped.shape[:2] == (8, 28)
    assert np.array_equal(paste(cropped, box, np.zeros_like(data)), data)
    wide = [slice(-2, 22), slice(-1, 31), slice(0, 5)]  # reaching beyond the array: zero padding
    assert np.array_equal(paste(crop_padded(data, wide), wide, np.zeros_like(data)), data)


def test_modality_names() -> None:
    assert canonical_modality("T1w") == "t1" and canonical_modality("t2f") == "flair"
    assert parse_modality_list("t1, T2 ,flair") == ["t1", "t2", "flair"]
    with pytest.raises(InputError, match="unknown modality 'swi'"):
        canonical_modality("swi")
    with pytest.raises(InputError, match="twice"):
        parse_modality_list("t1,T1w")
    assert len(all_subsets(["a", "b", "c"])) == 7


def test_discover_subjects_folder_and_manifest(tmp_path: Path) -> None:
    write_subject(tmp_path / "data" / "s1")
    write_subject(tmp_path / "data" / "s2", seed=1)
    subjects = discover_subjects(tmp_path / "data")
    assert [s.name for s in subjects] == ["s1", "s2"]
    assert set(subjects[0].files) == {"t1", "t1c", "t2", "flair"} and "lesion" in subjects[0].masks
    manifest = tmp_path / "m.csv"
    manifest.write_text("subject,modality,path\n" + "".join(
        f"s1,{m},data/s1/{f}.nii.gz\n" for m, f in (("T1w", "t1"), ("t2", "t2"))))
    listed = discover_subjects(manifest)
    assert listed[0].files == {"t1": tmp_path / "data/s1/t1.nii.gz", "t2": tmp_path / "data/s1/t2.nii.gz"}
    loaded = load_subject(listed[0], ["t1", "t2"])
    for volume in loaded.volumes.values():
        assert volume[loaded.mask].mean() == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(InputError, match="no flair"):
        load_subject(listed[0], ["flair"])


def test_oblique_affine_orientation() -> None:
    assert "".join(nib.aff2axcodes(oblique_affine("LPS"))) == "LPS"
