"""Paired significance tests between evaluations (a model against a baseline, dedicated models, ...)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from scipy import stats

from ..errors import InputError
from ..metrics import Metric, shown_metrics

ALPHA = 0.05
POOLED = "pooled"
ALL_TARGETS = "all"  # the target column of a row pooled over every target

Key = tuple[str, str, str]  # target, subset, subject


def read_rows(path: Path) -> list[dict]:
    """Rows of a metrics.csv written by `mrimpute eval`, or of every metrics.csv under a folder (one run)."""
    path = Path(path)
    files = sorted(path.rglob("metrics.csv")) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise InputError(f"{path}: evaluation CSV not found"
                         + (" (no metrics.csv under the folder)" if path.is_dir() else ""))
    rows, origin = [], {}
    for file in files:
        with file.open(newline="") as handle:
            found = list(csv.DictReader(handle))
        columns = set(found[0]) if found else set()
        if not {"subject", "target", "subset", "protocol"} <= columns or not columns & set(_names()):
            raise InputError(f"{file}: not a metrics.csv written by mrimpute eval")
        for row in found:
            key = (row["target"], row["subset"], row["subject"], row["protocol"])
            if key in origin:
                where = "twice (an eval with --views? compare single-view evaluations)" if origin[key] == file \
                    else f"again (also in {origin[key]})"
                raise InputError(f"{file}: scores {'/'.join(key)} {where}")
            origin[key] = file
        rows += found
    return rows


def _names() -> list[str]:
    return [m.name for m in shown_metrics(headline_only=True)]


def _compared(indexed: list[dict[Key, dict]]) -> list[Metric]:
    """The headline metrics (metrics.METRICS), in the tables' order, that every run scored on every row (a metric
    added later is left out when an older metrics.csv lacks it)."""
    return [m for m in shown_metrics(headline_only=True)
            if all(m.name in row and row[m.name] not in ("", None) for run in indexed for row in run.values())]


def run_label(path: Path) -> str:
    """A short name for a run: the folder's name, or the CSV's folder's name."""
    path = Path(path)
    return path.name if path.is_dir() else (path.parent.name or path.stem)


def paired_tests(a: np.ndarray, b: np.ndarray) -> tuple[float, float, bool]:
    """Paired t-test and Wilcoxon signed-rank p-values; significant when both are below ALPHA."""
    if len(a) < 2 or np.allclose(a, b):
        return float("nan"), float("nan"), False
    t_p = float(stats.ttest_rel(a, b).pvalue)
    try:
        w_p = float(stats.wilcoxon(a, b).pvalue)
    except ValueError:
        w_p = float("nan")
    return t_p, w_p, not math.isnan(t_p) and not math.isnan(w_p) and t_p < ALPHA and w_p < ALPHA


def _index(rows: list[dict], protocol: str) -> dict[Key, dict]:
    return {(r["target"], r["subset"], r["subject"]): r for r in rows if r["protocol"] == protocol}


Group = tuple[str, str, list[Key], str | None]  # target, subset (or pool), keys, the one run a pool is for


def _groups(reference: dict[Key, dict], others: list[tuple[str, dict[Key, dict]]]) -> list[Group]:
    """(target, subset, keys, None) per subset of the reference run, then per target and other run the pool of the
    (subset, subject) pairs both scored, when it spans several subsets: (target, 'pooled', keys, run label), and per
    other run the pool over every target ('all'), when both scored several targets (the Wilcoxon test then asks
    whether one run is better across targets; the means mix the targets' scales)."""
    groups: dict[tuple[str, str], list[Key]] = {}
    for key in reference:
        groups.setdefault(key[:2], []).append(key)
    result: list[Group] = [(target, subset, keys, None) for (target, subset), keys in groups.items()]
    name = (lambda label: f"{POOLED} ({label})") if len(others) > 1 else (lambda label: POOLED)
    for target in dict.fromkeys(key[0] for key in reference):
        for label, run in others:
            pooled = [k for k in reference if k[0] == target and k in run]
            if len({k[1] for k in pooled}) > 1:
                result.append((target, name(label), pooled, label))
    for label, run in others:  # every (target, subset, subject) both scored, when that spans several targets
        shared = [k for k in reference if k in run]
        if len({k[0] for k in shared}) > 1:
            result.append((ALL_TARGETS, name(label), shared, label))
    return result


def _better(metric: Metric, a: np.ndarray, b: np.ndarray, label_a: str, label_b: str) -> str:
    """The label of the run with the better mean (by the metric's direction)."""
    return label_a if (a.mean() > b.mean()) == metric.higher_is_better else label_b


def compare_many(runs: list[tuple[str, list[dict]]], protocol: str = "brain") -> tuple[list[dict], list[dict]]:
    """Compare every run with the first one.

    Returns a wide table (one row per target and input subset, plus per target and run a row pooled over the
    (subset, subject) pairs that run shares with the first; each metric's mean per run, '*' where a run differs
    from the first with p < 0.05 in both tests, '-' where a run did not score the row) and the long rows behind it
    (one per row, metric and run; `better` names the better run where the difference is significant)."""
    if len(runs) < 2:
        raise InputError("--compare needs at least two evaluations")
    indexed = [_index(rows, protocol) for _, rows in runs]
    reference, others = indexed[0], indexed[1:]
    groups = [g for g in _groups(reference, list(zip([label for label, _ in runs[1:]], others)))
              if any(k in run for run in others for k in g[2])]
    if not groups:
        raise InputError("the evaluations share no subject, target and subset to compare")
    metrics = _compared(indexed)
    if not metrics:
        raise InputError("the evaluations share no metric to compare")
    wide, long = [], []
    for target, subset, keys, only in groups:
        row = {"target": target, "inputs": subset, "n": len(keys)}
        for metric in metrics:
            name = metric.name
            a = np.array([float(reference[k][name]) for k in keys])
            row[f"{name} {runs[0][0]}"] = f"{a.mean():.4f}"
            for (label, _), run in zip(runs[1:], others):
                common = [k for k in keys if k in run]
                if not common or only not in (None, label):
                    row[f"{name} {label}"] = "-"
                    continue
                a_common = np.array([float(reference[k][name]) for k in common])
                b = np.array([float(run[k][name]) for k in common])
                t_p, w_p, significant = paired_tests(a_common, b)
                row[f"{name} {label}"] = f"{b.mean():.4f}" + ("*" if significant else "")
                long.append({"target": target, "subset": subset, "metric": name, "run": label, "n": len(common),
                             "mean_a": float(a_common.mean()), "mean_b": float(b.mean()), "t_test_p": t_p,
                             "wilcoxon_p": w_p, "significant": "*" if significant else "",
                             "better": _better(metric, a_common, b, runs[0][0], label) if significant else ""})
        wide.append(row)
    return wide, long


def markdown_table(title: str, rows: list[dict]) -> str:
    """The comparison as a Markdown table under its title (for notes and model cards)."""
    header = list(rows[0])
    lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[name]) for name in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"
