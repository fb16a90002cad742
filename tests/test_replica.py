"""The REPLICA random-forest baseline on small seeded phantoms: features, fit/predict accuracy, masking, errors."""

from __future__ import annotations

import numpy as np
import pytest

from mrimpute.baselines.replica import FEATURES_PER_CONTRAST, ReplicaRegressor, features

SHAPE = (24, 24, 12)
MAPPING = {"t1": (0.5, 0.8, 1.3), "t2": (1.4, 0.9, 0.6), "flair": (0.4, 1.2, 0.9)}  # intensity per tissue class


def phantom(seed: int, noise: float = 0.03) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Volumes (t1, t2 noisy; flair noise-free) of a 3-class ellipsoid phantom, each divided by its brain mean."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij"))
    centre = rng.uniform(-0.1, 0.1, size=(3, 1, 1, 1))
    radius = np.sqrt((((grid - centre) / np.array([0.9, 0.85, 0.95])[:, None, None, None]) ** 2).sum(axis=0))
    mask = radius < 1.0
    labels = np.where(radius < 0.45, 2, np.where(radius < 0.75, 1, 0))
    for _ in range(3):  # a few small blobs of class 0 inside, so classes are not a function of radius alone
        spot = rng.uniform(-0.4, 0.4, size=(3, 1, 1, 1))
        labels[np.sqrt(((grid - spot) ** 2).sum(axis=0)) < 0.2] = 0
    volumes = {}
    for name, levels in MAPPING.items():
        values = np.asarray(levels, dtype=np.float32)[labels]
        if name != "flair":
            values = values + rng.normal(0.0, noise, SHAPE).astype(np.float32)
        values = np.clip(values, 0.0, None) * mask
        volumes[name] = (values / values[mask].mean()).astype(np.float32)
    return volumes, mask


def small(seed: int = 0) -> ReplicaRegressor:
    return ReplicaRegressor(("t1", "t2"), "flair", n_estimators=15, max_depth=12, min_samples_leaf=3,
                            samples_per_subject=3000, seed=seed, n_jobs=1)


@pytest.fixture(scope="module")
def trained() -> ReplicaRegressor:
    return small().fit([phantom(1), phantom(2)])


def test_feature_matrix_shape_and_constant_volume() -> None:
    volumes, mask = phantom(0)
    matrix = features(volumes, mask, ("t1", "t2"))
    assert matrix.shape == (int(mask.sum()), 2 * FEATURES_PER_CONTRAST) == (int(mask.sum()), 72)
    assert matrix.dtype == np.float32
    centre = features(volumes, mask, ("t1",))[:, 13]  # offset (0, 0, 0) of the 3x3x3 neighbourhood
    np.testing.assert_array_equal(centre, volumes["t1"][mask])
    constant = {"t1": np.full(SHAPE, 1.7, dtype=np.float32)}
    flat = features(constant, np.ones(SHAPE, dtype=bool), ("t1",))
    np.testing.assert_allclose(flat, 1.7, rtol=1e-5)


def test_fit_predict_recovers_target(trained: ReplicaRegressor) -> None:
    volumes, mask = phantom(3)
    prediction = trained.predict(volumes, mask, chunk=1000)
    truth = volumes["flair"][mask]
    mae = np.abs(prediction[mask] - truth).mean()
    assert mae < 0.1 * truth.mean()
    assert mae < 0.5 * np.abs(truth - truth.mean()).mean()  # clearly better than predicting the mean
    assert prediction.dtype == np.float32 and prediction.shape == SHAPE
    assert np.all(prediction[~mask] == 0) and np.all(prediction >= 0)


def test_same_seed_same_prediction(trained: ReplicaRegressor) -> None:
    volumes, mask = phantom(4)
    again = small().fit([phantom(1), phantom(2)])
    np.testing.assert_array_equal(trained.predict(volumes, mask), again.predict(volumes, mask))


def test_missing_contrast_and_empty_mask(trained: ReplicaRegressor) -> None:
    volumes, mask = phantom(5)
    del volumes["t2"]
    with pytest.raises(ValueError, match="t2"):
        trained.predict(volumes, mask)
    with pytest.raises(ValueError, match="t2"):
        features(volumes, mask, ("t1", "t2"))
    with pytest.raises(ValueError, match="flair"):
        small().fit([({"t1": volumes["t1"], "t2": volumes["t1"]}, mask)])
    with pytest.raises(ValueError, match="empty"):
        trained.predict(phantom(5)[0], np.zeros(SHAPE, dtype=bool))
