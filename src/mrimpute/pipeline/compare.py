"""Paired significance tests between two evaluation CSVs (e.g. a model against a baseline)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from scipy import stats

from ..errors import InputError

METRICS: tuple[str, ...] = ("mse", "psnr", "ssim")
ALPHA = 0.05


def read_rows(path: Path) -> list[dict]:
    """Rows of a metrics.csv written by `mrimpute eval`."""
    if not Path(path).is_file():
        raise InputError(f"{path}: evaluation CSV not found")
    with Path(path).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"subject", "target", "subset", "protocol", *METRICS} <= set(rows[0]):
        raise InputError(f"{path}: not a metrics.csv written by mrimpute eval")
    return rows


def _p_values(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    if len(a) < 2 or np.allclose(a, b):
        return float("nan"), float("nan")
    t_p = float(stats.ttest_rel(a, b).pvalue)
    try:
        w_p = float(stats.wilcoxon(a, b).pvalue)
    except ValueError:
        w_p = float("nan")
    return t_p, w_p


def compare_runs(rows_a: list[dict], rows_b: list[dict], protocol: str = "brain") -> list[dict]:
    """Per target, subset and metric: means of A and B over the subjects both scored, and paired test p-values.

    `significant` is '*' where both the paired t-test and the Wilcoxon signed-rank test give p < 0.05.
    """
    key = lambda r: (r["target"], r["subset"], r["subject"])  # noqa: E731
    b_by_key = {key(r): r for r in rows_b if r["protocol"] == protocol}
    groups: dict[tuple[str, str], list[tuple[dict, dict]]] = {}
    for row in rows_a:
        if row["protocol"] == protocol and key(row) in b_by_key:
            groups.setdefault((row["target"], row["subset"]), []).append((row, b_by_key[key(row)]))
    if not groups:
        raise InputError("the two evaluations share no subject, target and subset to compare")
    results = []
    for (target, subset), pairs in groups.items():
        for metric in METRICS:
            a = np.array([float(p[0][metric]) for p in pairs])
            b = np.array([float(p[1][metric]) for p in pairs])
            t_p, w_p = _p_values(a, b)
            significant = not math.isnan(t_p) and not math.isnan(w_p) and t_p < ALPHA and w_p < ALPHA
            results.append({"target": target, "subset": subset, "metric": metric, "n": len(pairs),
                            "mean_a": float(a.mean()), "mean_b": float(b.mean()), "t_test_p": t_p,
                            "wilcoxon_p": w_p, "significant": "*" if significant else ""})
    return results
