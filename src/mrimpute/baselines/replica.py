"""REPLICA-style baseline (Jog et al. 2017): a random forest predicting a target contrast voxel-wise.

Each brain voxel is described by multi-scale features of the available input contrasts (see `features`); a
`sklearn.ensemble.RandomForestRegressor` maps them to the target intensity. Volumes are float32 3D arrays already
normalised (divided by their brain mean, background 0) on one voxel grid; the module reads no files.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.ndimage import gaussian_filter
from sklearn.ensemble import RandomForestRegressor

SIGMAS = (1.0, 2.0, 4.0)
CONTEXT_SIGMA = 4.0
CONTEXT_DISTANCE = 8
NEIGHBOURHOOD = tuple(itertools.product((-1, 0, 1), repeat=3))
CONTEXT = tuple(tuple(sign * CONTEXT_DISTANCE * (axis == a) for a in range(3)) for axis in range(3) for sign in (-1, 1))
FEATURES_PER_CONTRAST = len(NEIGHBOURHOOD) + len(SIGMAS) + len(CONTEXT)  # 27 + 3 + 6 = 36


def _check(volumes: dict[str, np.ndarray], mask: np.ndarray, names: tuple[str, ...]) -> None:
    """Raise ValueError for a missing contrast, a shape mismatch or an empty mask."""
    missing = [name for name in names if name not in volumes]
    if missing:
        raise ValueError(f"missing contrast(s) {', '.join(missing)}: got {', '.join(sorted(volumes)) or 'none'}")
    for name in names:
        if volumes[name].shape != mask.shape:
            raise ValueError(f"contrast {name} has shape {volumes[name].shape}, the mask has {mask.shape}")
    if not np.any(mask):
        raise ValueError("the brain mask is empty")


def _padded_stack(volume: np.ndarray) -> list[np.ndarray]:
    """The volume and its Gaussian-smoothed copies (sigmas 1, 2, 4), each edge-padded by CONTEXT_DISTANCE."""
    volume = np.ascontiguousarray(volume, dtype=np.float32)  # C order: _gather's strides index its ravel()
    scales = [volume] + [gaussian_filter(volume, s, mode="nearest") for s in SIGMAS]
    return [np.ascontiguousarray(np.pad(v, CONTEXT_DISTANCE, mode="edge")) for v in scales]


def _gather(stack: list[np.ndarray], index: np.ndarray) -> np.ndarray:
    """Features of one contrast at voxels `index` (flat indices into the padded grid): n x FEATURES_PER_CONTRAST."""
    strides = np.array(stack[0].strides) // stack[0].itemsize
    full, smooth = stack[0].ravel(), [v.ravel() for v in stack[1:]]
    columns = [full[index + int(np.dot(offset, strides))] for offset in NEIGHBOURHOOD]
    columns += [v[index] for v in smooth]
    coarse = smooth[SIGMAS.index(CONTEXT_SIGMA)]
    columns += [coarse[index + int(np.dot(offset, strides))] for offset in CONTEXT]
    return np.stack(columns, axis=1)


def _padded_index(mask: np.ndarray, voxels: np.ndarray | None = None) -> np.ndarray:
    """Flat indices into the padded grid of the mask's voxels (or of the given n x 3 voxel coordinates)."""
    coords = np.argwhere(mask) if voxels is None else voxels
    padded_shape = tuple(s + 2 * CONTEXT_DISTANCE for s in mask.shape)
    return np.ravel_multi_index(tuple((coords + CONTEXT_DISTANCE).T), padded_shape)


def _matrix(stacks: list[list[np.ndarray]], index: np.ndarray) -> np.ndarray:
    """The feature matrix (n x n_features, float32) of all contrasts at padded flat indices `index`."""
    return np.concatenate([_gather(stack, index) for stack in stacks], axis=1).astype(np.float32, copy=False)


def features(volumes: dict[str, np.ndarray], mask: np.ndarray, order: tuple[str, ...]) -> np.ndarray:
    """Feature matrix (n_voxels_in_mask x 36 * len(order), float32), rows in np.argwhere(mask) order.

    For each contrast in `order`, 36 columns:
      - 27: the voxel's 3x3x3 neighbourhood at full resolution (offsets in {-1,0,1}^3, last axis fastest);
      - 3: Gaussian-smoothed copies (sigma 1, 2, 4 voxels) sampled at the voxel;
      - 6: coarse context, the sigma-4 copy sampled at -8 and +8 voxels along axis 0, then 1, then 2.
    Samples beyond the volume's edge take the nearest edge value.
    """
    mask = np.asarray(mask, dtype=bool)
    _check(volumes, mask, order)
    stacks = [_padded_stack(volumes[name]) for name in order]
    return _matrix(stacks, _padded_index(mask))


class ReplicaRegressor:
    """Random-forest regression of `target` from multi-scale features of the `inputs` contrasts.

    Each split considers a third of the features (the usual choice for regression forests; 3-5x faster to fit).
    """

    def __init__(self, inputs: tuple[str, ...], target: str, n_estimators: int = 60, max_depth: int | None = 20,
                 min_samples_leaf: int = 5, samples_per_subject: int = 40000, seed: int = 0, n_jobs: int = -1,
                 max_features: float = 1 / 3) -> None:
        self.inputs, self.target = tuple(inputs), target
        self.samples_per_subject, self.seed = samples_per_subject, seed
        self.forest = RandomForestRegressor(n_estimators=n_estimators, max_depth=max_depth,
                                            min_samples_leaf=min_samples_leaf, max_features=max_features,
                                            random_state=seed, n_jobs=n_jobs)
        self.fitted = False

    def _training_rows(self, volumes: dict[str, np.ndarray], mask: np.ndarray,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Features and target values at `samples_per_subject` random brain voxels of one subject."""
        mask = np.asarray(mask, dtype=bool)
        _check(volumes, mask, (*self.inputs, self.target))
        coords = np.argwhere(mask)
        coords = coords[rng.choice(len(coords), size=min(self.samples_per_subject, len(coords)), replace=False)]
        x = _matrix([_padded_stack(volumes[name]) for name in self.inputs], _padded_index(mask, coords))
        y = np.asarray(volumes[self.target], dtype=np.float32)[tuple(coords.T)]
        return x, y

    def fit(self, subjects: list[tuple[dict[str, np.ndarray], np.ndarray]]) -> ReplicaRegressor:
        """Train on (volumes incl. the target, brain mask) pairs; returns self."""
        if not subjects:
            raise ValueError("no training subjects given")
        rng = np.random.default_rng(self.seed)
        rows = [self._training_rows(volumes, mask, rng) for volumes, mask in subjects]
        self.forest.fit(np.concatenate([x for x, _ in rows]), np.concatenate([y for _, y in rows]))
        self.fitted = True
        return self

    def predict(self, volumes: dict[str, np.ndarray], mask: np.ndarray, chunk: int = 200000) -> np.ndarray:
        """The synthesised target volume (float32, zero outside the mask, clipped at 0), predicted in chunks."""
        if not self.fitted:
            raise ValueError("ReplicaRegressor.predict called before fit")
        mask = np.asarray(mask, dtype=bool)
        _check(volumes, mask, self.inputs)
        stacks = [_padded_stack(volumes[name]) for name in self.inputs]
        index = _padded_index(mask)
        values = np.concatenate([self.forest.predict(_matrix(stacks, index[start:start + chunk]))
                                 for start in range(0, len(index), chunk)])
        out = np.zeros(mask.shape, dtype=np.float32)
        out[mask] = np.clip(values, 0.0, None)
        return out
