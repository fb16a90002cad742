"""Image-quality metrics between a synthesised and a true volume, under three protocols.

- ``paper``: whole volume, each divided by its mean intensity (Chartsias et al.); PSNR from the true volume's
  maximum; SSIM over the whole volume.
- ``brain``: inside the brain mask, each volume divided by its mean over the mask; PSNR from the true volume's
  range in the mask; SSIM map averaged over the mask.
- ``brasyn``: the BraSyn challenge protocol: each volume clipped to the 0.5-99.5 percentiles of its brain voxels and
  scaled to [0, 1]; SSIM map and PSNR (data range 1) inside the mask.

SSIM and PSNR come from scikit-image (its default 7-voxel uniform window; data range given explicitly).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats
from skimage.metrics import structural_similarity

from .data.intensity import blur_inside, bounding_box, crop_padded

PROTOCOLS: tuple[str, ...] = ("paper", "brain", "brasyn")
SSIM_WINDOW = 7  # scikit-image's default window
BLUR_SIGMA = 2.0  # voxels: the blurred-error reference of uncertainty_correlation


@dataclass
class Pair:
    """A prediction and its truth in a protocol's units, the region scored and the data range (for PSNR, SSIM)."""

    pred: np.ndarray
    true: np.ndarray
    region: np.ndarray
    data_range: float

    @functools.cached_property
    def diff(self) -> np.ndarray:
        """prediction - truth over the region's voxels."""
        return (self.pred - self.true)[self.region]


def _mse(pair: Pair) -> float:
    return float(np.mean(pair.diff**2))


def _mae(pair: Pair) -> float:
    return float(np.mean(np.abs(pair.diff)))


def _psnr(pair: Pair) -> float:
    mse = _mse(pair)
    return float(10 * np.log10(pair.data_range**2 / mse)) if mse > 0 else float("inf")


def _slope(pair: Pair) -> float:
    """The calibration slope: the least-squares slope of the truth on the prediction over the region (each about its
    mean). 1: the prediction's contrasts are as large as the truth follows; below 1: larger (a prediction scaled by
    the slope about its mean has the lowest squared error of any such scaling); NaN for a constant prediction."""
    pred, true = pair.pred[pair.region], pair.true[pair.region]
    deviation = pred - pred.mean()
    spread = float(np.sum(deviation**2))
    return float(np.sum(deviation * (true - true.mean())) / spread) if spread > 0 else float("nan")


def _ssim(pair: Pair) -> float:
    region = pair.region
    box = [slice(max(0, b.start), min(n, b.stop)) for b, n in
           zip(bounding_box(region, (0, 1, 2), multiple=1, margin=4), region.shape)]
    true, pred = crop_padded(pair.true, box), crop_padded(pair.pred, box)
    if min(true.shape) < SSIM_WINDOW:  # a thin slab: a window that fits (odd), at least 3 voxels
        true, pred, region = (np.pad(a, [(0, max(0, 3 - n)) for n in a.shape], mode="edge")
                              for a in (true, pred, crop_padded(region, box)))
        window = max(3, min(SSIM_WINDOW, min(true.shape) - (min(true.shape) + 1) % 2))
        _, ssim_map = structural_similarity(true, pred, data_range=pair.data_range, full=True, win_size=window)
        return float(ssim_map[region].mean())
    mean_ssim, ssim_map = structural_similarity(true, pred, data_range=pair.data_range, full=True)
    # whole volume: scikit-image's own mean (which leaves out the window's half-width at the borders)
    return float(mean_ssim if region.all() else ssim_map[crop_padded(region, box)].mean())


@dataclass(frozen=True)
class Metric:
    """One image-quality metric: every report (metrics.csv, summary.json, the model card, the console tables and
    eval --compare) is made by going over METRICS."""

    name: str  # key in the score dicts, column of metrics.csv, key of summary.json (with `<name>_sd`)
    label: str  # column header of the human-readable tables
    score: Callable[[Pair], float]
    higher_is_better: bool | None  # None: no direction (e.g. best at 1); only for metrics that are not headline
    decimals: int  # digits shown in the human-readable tables
    headline: bool = True  # in the console summary and compared by `eval --compare` (else: CSV, JSON and card)

    def __post_init__(self) -> None:
        if self.headline and self.higher_is_better is None:
            raise ValueError(f"headline metric '{self.name}' needs a direction (eval --compare says which is better)")


# In metrics.csv's column order (which existing files have: keep it, add new metrics at the end). The tables show
# the metrics with a direction from the last up (SSIM first, as the paper's tables do), then the others.
METRICS: tuple[Metric, ...] = (
    Metric("mse", "MSE", _mse, higher_is_better=False, decimals=4),
    Metric("mae", "MAE", _mae, higher_is_better=False, decimals=4, headline=False),
    Metric("psnr", "PSNR (dB)", _psnr, higher_is_better=True, decimals=2),
    Metric("ssim", "SSIM", _ssim, higher_is_better=True, decimals=4),
    Metric("slope", "slope", _slope, higher_is_better=None, decimals=3, headline=False),
)


def metric_names() -> tuple[str, ...]:
    """The metrics' names in metrics.csv's order."""
    return tuple(m.name for m in METRICS)


def shown_metrics(headline_only: bool = False) -> list[Metric]:
    """The metrics in the human-readable tables' order (SSIM first, those without a direction last), optionally only
    the headline ones."""
    ordered = [m for m in reversed(METRICS) if m.higher_is_better is not None]
    ordered += [m for m in METRICS if m.higher_is_better is None]
    return [m for m in ordered if m.headline or not headline_only]


def format_value(metric: Metric, value: float, sd: float | None = None) -> str:
    """A value (and its sd) in the metric's format: '0.8123' or '0.8123 ± 0.0100'."""
    text = f"{value:.{metric.decimals}f}"
    return text if sd is None else f"{text} ± {sd:.{metric.decimals}f}"


def _scores(pred: np.ndarray, true: np.ndarray, region: np.ndarray, data_range: float) -> dict[str, float]:
    pair = Pair(pred, true, region, data_range)
    return {**{m.name: m.score(pair) for m in METRICS}, "data_range": float(data_range)}


def _divide_by_mean(volume: np.ndarray, region: np.ndarray) -> np.ndarray:
    mean = float(volume[region].mean()) if region.any() else 0.0
    return volume / mean if mean > 0 else volume


def _brasyn_scale(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    low, high = np.percentile(volume[mask], [0.5, 99.5])
    if high <= low:
        return np.zeros_like(volume)
    return (np.clip(volume, low, high) - low) / (high - low) * mask


def compare(prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray, protocol: str = "brain",
            region: np.ndarray | None = None) -> dict[str, float]:
    """Every metric of METRICS (MSE, MAE, PSNR, SSIM), and the data range, of prediction against truth under a
    protocol.

    mask is the brain; region (default: the protocol's own) restricts the scores, e.g. to a lesion.
    """
    if not mask.any():
        raise ValueError("the brain mask is empty")
    pred = np.clip(prediction, 0, None).astype(np.float64)
    true = np.clip(truth, 0, None).astype(np.float64)
    if protocol == "paper":
        everything = np.ones(true.shape, dtype=bool)
        pred, true = _divide_by_mean(pred, everything), _divide_by_mean(true, everything)
        return _scores(pred, true, everything if region is None else region, float(true.max()))
    if protocol == "brain":
        pred, true = _divide_by_mean(pred, mask), _divide_by_mean(true, mask)
        return _scores(pred, true, mask if region is None else region, float(true[mask].max() - true[mask].min()))
    if protocol == "brasyn":
        pred, true = _brasyn_scale(pred, mask), _brasyn_scale(true, mask)
        return _scores(pred, true, mask if region is None else region, 1.0)
    raise ValueError(f"unknown protocol '{protocol}': expected one of {', '.join(PROTOCOLS)}")


def in_brain_metrics(prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The ``brain`` protocol: scores inside the brain mask."""
    return compare(prediction, truth, mask, "brain")


def _brain_units(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The ``brain`` protocol's intensities: negatives clipped, divided by the mean over the brain."""
    return _divide_by_mean(np.clip(volume, 0, None).astype(np.float64), mask)


def striping(volume: np.ndarray, mask: np.ndarray, axis: int) -> float:
    """Slice-to-slice striping: the mean absolute difference between neighbouring slices across `axis`, over the
    voxel pairs that are both in the brain, in brain-mean units (compare with the true volume's own value)."""
    scaled = np.moveaxis(_brain_units(volume, mask), axis, 0)
    inside = np.moveaxis(mask, axis, 0)
    pairs = inside[1:] & inside[:-1]
    if not pairs.any():
        raise ValueError("no two neighbouring slices share brain voxels")
    return float(np.abs(scaled[1:] - scaled[:-1])[pairs].mean())


def absolute_error(prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """|prediction - truth| in the ``brain`` protocol's units, zero outside the mask."""
    return np.abs(_brain_units(prediction, mask) - _brain_units(truth, mask)) * mask


def shared_error_spearman(errors: dict[object, np.ndarray], mask: np.ndarray) -> dict[object, float]:
    """Per key, the mean Spearman correlation over the brain of its absolute error volume with each other key's
    (the same target synthesised from other input subsets); NaN with fewer than two keys or a constant error.

    Where one synthesis errs, another from different inputs errs too when the cause is in the true volume (its
    noise and slow drifts, detail none of the inputs shows) rather than in this synthesis: a reference for an
    uncertainty map's Spearman, what knowing another synthesis's error would give (not a bound)."""
    ranks = {k: stats.rankdata(v[mask]) for k, v in errors.items() if np.ptp(v[mask]) > 0}
    shared = {}
    for key in errors:
        others = [np.corrcoef(ranks[key], ranks[o])[0, 1] for o in ranks if o != key] if key in ranks else []
        shared[key] = float(np.mean(others)) if others else float("nan")
    return shared


def uncertainty_correlation(uncertainty: np.ndarray, prediction: np.ndarray, truth: np.ndarray,
                            mask: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman correlation, over the brain, between an uncertainty map and the absolute error of the
    prediction (both volumes in the ``brain`` protocol's units); NaN where either is constant.

    Also "blurred_error": the Spearman correlation of the absolute error with itself blurred inside the brain
    (Gaussian, sigma BLUR_SIGMA voxels) -- what a map that knew the error up to its finest grain would reach, a
    reference for how much of the error any smooth map can track (not a bound)."""
    error_volume = absolute_error(prediction, truth, mask)
    error = error_volume[mask]
    spread = np.asarray(uncertainty, dtype=np.float64)[mask]
    blurred = blur_inside(error_volume, mask, BLUR_SIGMA)[mask]
    reference = float(stats.spearmanr(blurred, error)[0]) if error.size >= 3 and np.ptp(error) > 0 else float("nan")
    if error.size < 3 or np.ptp(error) == 0 or np.ptp(spread) == 0:
        return {"pearson": float("nan"), "spearman": float("nan"), "blurred_error": reference}
    return {"pearson": float(stats.pearsonr(spread, error)[0]), "spearman": float(stats.spearmanr(spread, error)[0]),
            "blurred_error": reference}


def blurred_map_spearman(uncertainty: np.ndarray, prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray,
                         sigmas: tuple[float, ...]) -> dict[float, float]:
    """Per sigma (voxels; 0: the map as it is), the Spearman correlation over the brain between the uncertainty map
    blurred inside the brain and the absolute error of the prediction (brain protocol units); NaN where constant."""
    error = absolute_error(prediction, truth, mask)[mask]
    scores = {}
    for sigma in sigmas:
        blurred = np.asarray(uncertainty, np.float64) if sigma == 0 else blur_inside(uncertainty, mask, sigma)
        values = blurred[mask]
        defined = error.size >= 3 and np.ptp(error) > 0 and np.ptp(values) > 0
        scores[sigma] = float(stats.spearmanr(values, error)[0]) if defined else float("nan")
    return scores
