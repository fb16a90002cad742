"""The one normaliser: background as the exterior, invariance to a*x + b, outliers, findings, legacy models."""

from __future__ import annotations

import numpy as np
import pytest

from mrimpute.data.normaliser import (
    LEGACY_NORMALISER,
    NORMALISER,
    Normaliser,
    as_input,
    as_target,
    exterior,
    findings,
    foreground,
    normaliser_for,
    scaling,
)

from conftest import phantom


@pytest.fixture
def brain() -> np.ndarray:
    """A phantom T1 with a few dark ventricle-like voxels inside the brain."""
    volume = phantom((40, 36, 16), seed=1)["t1"].copy()
    volume[18:22, 16:20, 7:9] = 0.0  # dark interior: still brain, not background
    return volume


def _normalised(data: np.ndarray) -> np.ndarray:
    mask = foreground(data)
    return as_input(data, mask, scaling(data, mask))


def test_background_is_the_exterior_not_the_sign(brain: np.ndarray) -> None:
    mask = foreground(brain)
    assert mask[20, 18, 8]  # the dark interior is brain
    assert not mask[0, 0, 0] and not exterior(brain)[20, 18, 8]
    assert mask.sum() == (phantom((40, 36, 16), seed=1)["t1"] > 0).sum()


@pytest.mark.parametrize("a, b", [(1.0, 0.0), (0.001, 0.0), (3.7, -250.0), (1 / 400, -0.5), (12.0, 1000.0)])
def test_a_positive_affine_rescaling_changes_nothing(brain: np.ndarray, a: float, b: float) -> None:
    reference = _normalised(brain)
    rescaled = _normalised((a * brain.astype(np.float64) + b).astype(np.float32))
    assert np.abs(rescaled - reference).max() < 1e-4


def test_z_scored_input_with_a_constant_negative_background(brain: np.ndarray) -> None:
    mask = foreground(brain)
    inside = brain[mask]
    z = np.where(mask, (brain - inside.mean()) / inside.std(), -5.0).astype(np.float32)
    assert (z[mask] < 0).mean() > 0.3  # half the brain is negative: a sign rule would throw it away
    assert np.array_equal(foreground(z), mask)
    assert np.abs(_normalised(z) - _normalised(brain)).max() < 1e-4
    notes = findings(z, mask, scaling(z, mask), voxel_ml=0.001)
    assert any("looks z-scored" in n for n in notes)


def test_a_few_saturated_voxels_do_not_move_the_scale() -> None:
    brain = phantom((80, 72, 32), seed=3)["t1"]  # 20 voxels are a tiny share of a brain, as in a real scan
    saturated = brain.copy()
    saturated[tuple(np.argwhere(foreground(brain))[::997][:20].T)] = 32767.0
    mask = foreground(saturated)
    s = scaling(saturated, mask)
    assert s.clipped == 20 and s.peak == 32767.0
    unchanged = np.ones(brain.shape, dtype=bool)
    unchanged[tuple(np.argwhere(foreground(brain))[::997][:20].T)] = False
    assert np.abs(_normalised(saturated) - _normalised(brain))[unchanged].max() < 0.02
    assert any("outlier voxel(s)" in n for n in findings(saturated, mask, s, voxel_ml=0.001))


def test_findings_min_max_and_head(brain: np.ndarray) -> None:
    scaled = (brain / brain.max()).astype(np.float32)
    mask = foreground(scaled)
    assert any("min-max" in n for n in findings(scaled, mask, scaling(scaled, mask), voxel_ml=0.001))
    assert findings(brain, foreground(brain), scaling(brain, foreground(brain)), voxel_ml=0.001) == []
    huge_voxels = findings(brain, foreground(brain), scaling(brain, foreground(brain)), voxel_ml=1.0)
    assert any("looks like a head" in n for n in huge_voxels)


def test_targets_keep_the_papers_units(brain: np.ndarray) -> None:
    mask = foreground(brain)
    target = as_target(brain, mask, scaling(brain, mask))
    assert target[mask].mean() == pytest.approx(1.0, abs=0.01)
    assert target[~mask].max() == 0.0
    assert np.allclose(target[mask], np.clip(brain[mask], 0, None) / brain[mask].mean(), rtol=1e-4)


def test_noisy_air_around_a_head_is_background() -> None:
    rng = np.random.default_rng(0)
    head = phantom((40, 36, 16), seed=2)["t2"] + np.abs(rng.normal(0, 4.0, (40, 36, 16))).astype(np.float32)
    head[0:2, 0:2, 0:2] += 60.0  # a speck of bright noise in the air
    mask = foreground(head)
    assert not mask[0, 0, 0] and mask[20, 18, 8]
    assert abs(int(mask.sum()) - int((phantom((40, 36, 16), seed=2)["t2"] > 0).sum())) < 0.05 * mask.sum()


def test_checkpoints_name_their_normaliser() -> None:
    assert normaliser_for({"normaliser": NORMALISER}) == Normaliser(NORMALISER)
    assert normaliser_for({}).name == LEGACY_NORMALISER  # models trained before it
    legacy = Normaliser(LEGACY_NORMALISER)
    volume = phantom((40, 36, 16))["flair"]
    mask = legacy.foreground(volume)
    s = legacy.scaling(volume, mask)
    assert np.allclose(as_input(volume, mask, s)[mask], volume[mask] / volume[mask].mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="unknown normaliser"):
        normaliser_for({"normaliser": "nonsense"})


def test_a_legacy_model_still_warns_of_a_z_scored_input(brain: np.ndarray) -> None:
    from mrimpute.runtime.prepared_inputs import normalise_inputs

    mask = foreground(brain)
    z = np.where(mask, (brain - brain[mask].mean()) / brain[mask].std(), -5.0).astype(np.float32)
    legacy = normalise_inputs({"t1": z}, Normaliser(LEGACY_NORMALISER)).findings["t1"]
    assert len(legacy) == 1 and "looks z-scored" in legacy[0] and "expect a poor result" in legacy[0]
    assert normalise_inputs({"t1": brain}, Normaliser(LEGACY_NORMALISER)).findings["t1"] == []
