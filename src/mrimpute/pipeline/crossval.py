"""K-fold cross-validation by subject: train on K-1 folds with given settings, score the held-out fold, pool."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data.subjects import discover_subjects
from ..errors import InputError
from ..runtime.reporting import Reporter
from .evaluate import EvalSettings, evaluate
from .train import TrainSettings, train


def subject_folds(names: list[str], folds: int, seed: int) -> list[list[str]]:
    """Split subject names into `folds` seeded, near-equal groups."""
    if folds < 2 or folds > len(names):
        raise InputError(f"--folds {folds} needs 2 to {len(names)} folds for {len(names)} subjects")
    order = np.random.default_rng(seed).permutation(len(names))
    return [sorted(names[i] for i in chunk) for chunk in np.array_split(order, folds)]


def cross_validate(template: TrainSettings, evaluation: EvalSettings, folds: int, work_dir: Path,
                   reporter: Reporter | None = None) -> list[dict]:
    """Rows of every fold's held-out subjects, each tagged with its fold; one model per fold in work_dir."""
    reporter = reporter or Reporter()
    names = [s.name for s in discover_subjects(template.data)]
    rows: list[dict] = []
    for index, held_out in enumerate(subject_folds(names, folds, template.seed)):
        reporter.message(f"fold {index + 1}/{folds}: holding out {', '.join(held_out)}")
        model = train(replace(template, exclude=held_out, out=work_dir / f"fold{index + 1}.pt", resume=False), reporter)
        fold_rows = evaluate(replace(evaluation, data=template.data, model=model, subjects=held_out), reporter)
        rows += [{**row, "fold": index + 1} for row in fold_rows]
    return rows
