"""Baseline predictors for `eval`: the REPLICA-style random forest, trained on the model's training subjects."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..baselines.replica import ReplicaRegressor
from ..data.normaliser import Normaliser
from ..data.subjects import LoadedSubject, discover_subjects, load_subject
from ..errors import InputError
from .reporting import Reporter


class ReplicaPredictor:
    """Fits one forest per (input subset, target) on the training subjects when first asked, then predicts."""

    def __init__(self, train_data: Path, subjects: list[str], modalities: list[str], seed: int = 0,
                 reporter: Reporter | None = None, normaliser: Normaliser = Normaliser()) -> None:
        found = {s.name: s for s in discover_subjects(train_data)}
        missing = [name for name in subjects if name not in found]
        if missing or not subjects:
            raise InputError(f"{train_data}: baseline training subjects not found: "
                             f"{', '.join(missing) or 'none given'}")
        self.subjects = [found[name] for name in subjects]
        self.modalities, self.seed, self.normaliser = modalities, seed, normaliser
        self.reporter = reporter or Reporter()
        self._training: list[LoadedSubject] | None = None
        self._forests: dict[tuple[tuple[str, ...], str], ReplicaRegressor] = {}

    def _training_set(self, target: str) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
        """Each training subject's inputs (encoder units, as the model gets them) and its target (paper units)."""
        if self._training is None:
            self._training = [load_subject(s, self.modalities, normaliser=self.normaliser) for s in self.subjects]
        return [({**s.volumes, target: s.targets[target]}, s.mask) for s in self._training]

    def __call__(self, inputs: dict[str, np.ndarray], mask: np.ndarray, subsets: list[tuple[str, ...]],
                 target: str) -> dict[tuple[str, ...], np.ndarray]:
        results = {}
        for subset in subsets:
            key = (subset, target)
            if key not in self._forests:
                self.reporter.message(f"fitting the REPLICA-style forest for {target} from {'+'.join(subset)}")
                self._forests[key] = ReplicaRegressor(subset, target, seed=self.seed).fit(self._training_set(target))
            results[subset] = self._forests[key].predict(inputs, mask)
        return results
