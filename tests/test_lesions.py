"""Lesion masks: binarising rules, grid checks, subject loading, transfer onto another grid, lesion measures."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mrimpute.data.slices import SliceSampler
from mrimpute.data.subjects import discover_subjects, load_subject
from mrimpute.errors import InputError
from mrimpute.io.nifti import load_volume
from mrimpute.lesions import measures
from mrimpute.lesions.masks import binarise, lesion_file, load_lesion_mask
from mrimpute.lesions.transfer import transfer_lesion_mask

from conftest import write_subject


def test_label_maps_and_probability_maps_are_binarised_by_one_rule() -> None:
    labels = np.array([0, 1, 2, 3], dtype=np.float32)
    assert binarise(labels, "m").tolist() == [False, True, True, True]          # every non-zero label
    probabilities = np.array([0.0, 0.2, 0.5, 0.9], dtype=np.float32)
    assert binarise(probabilities, "m").tolist() == [False, False, True, True]  # >= 0.5
    for bad, problem in ((np.array([0.0, 1.5]), "fractional values above 1"), (np.array([0.0, -1.0]), "negative"),
                         (np.array([0.0, np.nan]), "NaN")):
        with pytest.raises(InputError, match=problem):
            binarise(bad, "m.nii.gz")


def test_a_mask_of_another_size_is_refused_with_a_clear_message(subject: dict[str, Path], tmp_path: Path) -> None:
    wrong = tmp_path / "other_lesion.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.uint8), np.eye(4)), wrong)
    with pytest.raises(InputError, match=r"other_lesion.nii.gz: lesion mask has shape \(20, 20, 20\)"):
        load_lesion_mask(wrong, load_volume(subject["t1"]))
    with pytest.raises(InputError, match="give --lesion-ref"):
        transfer_lesion_mask(wrong, load_volume(subject["t1"]))


def test_absent_mask_means_no_lesion_and_sources_choose_the_file(tmp_path: Path) -> None:
    paths = write_subject(tmp_path / "data" / "a")
    paths["lesion"].rename(paths["lesion"].with_name("lesion_predicted.nii.gz"))
    (subject,) = discover_subjects(tmp_path / "data")
    assert lesion_file(subject.masks, "expert") is None
    assert lesion_file(subject.masks, "either").name == "lesion_predicted.nii.gz"
    loaded = load_subject(subject, ["t1", "flair"], lesion_source="expert")
    assert loaded.lesion is not None and not loaded.lesion.any()
    loaded = load_subject(subject, ["t1", "flair"], lesion_source="either")
    assert loaded.lesion.sum() > 0 and loaded.lesion.shape == loaded.mask.shape
    with pytest.raises(InputError, match="unknown lesion mask source"):
        load_subject(subject, ["t1"], lesion_source="guess")
    sampler = SliceSampler([loaded], ["t1", "flair"], axis=2, crop=16, lesion=True)
    batch = sampler.batch(4, np.random.default_rng(0))
    assert batch.shape == (3, 4, 16, 16) and set(np.unique(batch[2])) <= {0.0, 1.0}
    # lesion oversampling: every crop centred on a lesion voxel at fraction 1; the plain stream at fraction 0
    on_lesions = SliceSampler([loaded], ["t1", "flair"], axis=2, crop=16, lesion=True, lesion_fraction=1.0)
    centres = on_lesions.batch(32, np.random.default_rng(0))[2, :, 8, 7:9]  # centre pixel (either flip)
    assert centres.max(axis=1).min() == 1.0
    plain = sampler.batch(32, np.random.default_rng(1))[2]
    assert centres.mean() > plain[:, 8, 7:9].max(axis=1).mean()
    unchanged = SliceSampler([loaded], ["t1", "flair"], axis=2, crop=16, lesion=True, lesion_fraction=0.0)
    assert np.array_equal(unchanged.batch(4, np.random.default_rng(0)), sampler.batch(4, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="between 0 and 1"):
        SliceSampler([loaded], ["t1"], axis=2, crop=16, lesion=True, lesion_fraction=1.5)


def _shifted_copy(paths: dict[str, Path], folder: Path, shift_mm: tuple[float, float, float],
                  pad: int) -> dict[str, Path]:
    """The same phantom on another grid: arrays padded by `pad` voxels and the object moved by shift_mm."""
    folder.mkdir()
    out = {}
    for name in ("t1", "lesion"):
        image = nib.load(paths[name])
        affine = image.affine.copy()
        affine[:3, 3] += np.asarray(shift_mm) - affine[:3, :3] @ np.full(3, pad)
        data = np.pad(np.asarray(image.dataobj), pad)
        out[name] = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), out[name])
    return out


def test_a_mask_on_another_grid_is_registered_and_resampled(subject: dict[str, Path], tmp_path: Path) -> None:
    donor = _shifted_copy(subject, tmp_path / "donor", (6.0, -4.0, 3.0), pad=3)
    target = load_volume(subject["t1"])
    truth = load_volume(subject["lesion"]).data > 0
    moved = transfer_lesion_mask(donor["lesion"], target, donor["t1"])
    assert "registered t1.nii.gz onto t1.nii.gz" in moved.how and "nearest neighbour" in moved.how
    assert moved.mask.shape == target.shape and moved.mask.dtype == bool
    assert measures.dice(moved.mask, truth) > 0.7
    same = transfer_lesion_mask(subject["lesion"], target)
    assert "used as is" in same.how and measures.dice(same.mask, truth) == 1.0


def test_lesion_measures_on_a_phantom() -> None:
    rng = np.random.default_rng(0)
    brain = np.zeros((30, 30, 30), bool)
    brain[3:27, 3:27, 3:27] = True
    t1 = np.where(brain, 0.3, 0.0).astype(np.float32)
    t1[8:22, 8:22, 8:22] = 0.9                                   # "white matter"
    t1[5:7, 5:25, 5:25] = 0.6
    image = np.where(brain, 1.0, 0.0) + 0.02 * rng.standard_normal(brain.shape)
    lesion = np.zeros_like(brain)
    lesion[12:16, 12:16, 12:16] = True
    image[lesion] = 2.0
    wm = measures.white_matter(t1, brain)
    assert wm[15, 15, 15] and not wm[4, 4, 4]
    report = measures.lesion_report(image.astype(np.float32), lesion, brain, t1, image, lesion, brain, t1)
    assert report["synthetic_lesion_to_nawm"] == pytest.approx(2.0, rel=0.03)
    assert report["real_lesion_to_nawm"] == pytest.approx(report["synthetic_lesion_to_nawm"])
    assert report["dice_hyperintensities_vs_mask"] > 0.95 and report["lesion_voxels"] == 64


def test_component_sampling_weighs_each_lesion_alike() -> None:
    """One large lesion and eight small ones: drawn per slice and voxel the large one takes almost every lesion
    crop, drawn per component each lesion gets a ninth; specks under MIN_LESION_VOXELS are no centre of their own."""
    from mrimpute.data.slices import MIN_LESION_VOXELS
    from mrimpute.data.subjects import LoadedSubject

    shape = (48, 48, 12)
    lesion, marks = np.zeros(shape, dtype=bool), np.ones(shape, dtype=np.float32)  # marks: which lesion is where
    lesion[4:20, 4:20, 2:10], marks[4:20, 4:20, 2:10] = True, 2.0  # 2,048 voxels
    for i in range(8):
        y, x = 30 + 4 * (i % 4), 28 + 8 * (i // 4)
        lesion[y:y + 3, x:x + 3, 5:7], marks[y:y + 3, x:x + 3, 5:7] = True, 3.0  # 18 voxels each, apart
    lesion[44, 4, 1] = True  # a one-voxel speck
    mask = np.zeros(shape, dtype=bool)
    mask[2:46, 2:46, :] = True
    loaded = LoadedSubject("s", {"t1": marks}, mask, {}, None, lesion=lesion)
    per_lesion = SliceSampler([loaded], ["t1"], axis=2, crop=8, lesion=True, lesion_fraction=1.0,
                              lesion_sampling="component")
    assert sorted(len(v) for _, v in per_lesion.lesion_components[("t1",)]) == [18] * 8 + [2048]
    assert MIN_LESION_VOXELS > 1
    per_voxel = SliceSampler([loaded], ["t1"], axis=2, crop=8, lesion=True, lesion_fraction=1.0)

    def small_share(sampler: SliceSampler) -> float:
        rng = np.random.default_rng(0)
        crops = np.concatenate([sampler.batch(64, rng)[0] for _ in range(8)])  # the marks plane, 512 crops
        return float((crops[:, 4, 3:5].max(axis=1) == 3.0).mean())  # the centre pixel (either flip)

    assert 0.84 < small_share(per_lesion) < 0.94  # 8 of 9 lesions
    assert small_share(per_voxel) < 0.1  # 2 of 9 lesion slices hold small lesions, beside 256 voxels of the big one
    with pytest.raises(ValueError, match="lesion sampling"):
        SliceSampler([loaded], ["t1"], axis=2, crop=8, lesion=True, lesion_sampling="subject")
