"""The optional scores of an evaluation row: a view's striping, and with an uncertainty map its correlations with
the absolute error and the references beside them (the blurred error, the other input subsets' errors)."""

from __future__ import annotations

import numpy as np

from ..config import SLICE_AXES
from ..metrics import absolute_error, shared_error_spearman, striping, uncertainty_correlation

Prediction = dict[tuple[str, tuple[str, ...]], dict[str, np.ndarray]]  # (view, subset) -> {"synthesis": ..., ...}


def extra_scores(maps: dict[str, np.ndarray], truth: np.ndarray, brain: np.ndarray, view: str | None = None,
                  striping_axis: str = "", truth_striping: float | None = None) -> dict:
    """The view and its striping (with a view), and the uncertainty-error correlations (with an uncertainty map)."""
    extra: dict = {}
    if view is not None:
        extra.update(view=view, striping_axis=striping_axis,
                     striping=striping(maps["synthesis"], brain, SLICE_AXES[striping_axis]),
                     striping_truth=truth_striping)
    if "uncertainty" in maps:
        correlation = uncertainty_correlation(maps["uncertainty"], maps["synthesis"], truth, brain)
        extra.update(unc_pearson=correlation["pearson"], unc_spearman=correlation["spearman"],
                     unc_blurred_error=correlation["blurred_error"])
    return extra


def shared_errors(results: Prediction, truth: np.ndarray, brain: np.ndarray) -> dict:
    """Per (view, subset), the Spearman of its |error| with the other subsets' of the same view (the reference
    metrics.shared_error_spearman: how far the error's ranking is the true volume's, shared by every synthesis)."""
    shared = {}
    for view in dict.fromkeys(v for v, _ in results):
        errors = {key: absolute_error(maps["synthesis"], truth, brain)
                  for key, maps in results.items() if key[0] == view}
        shared.update(shared_error_spearman(errors, brain))
    return shared
