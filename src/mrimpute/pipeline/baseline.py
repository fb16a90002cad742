"""Baseline predictors for `eval`: the REPLICA-style random forest, trained on the model's training subjects (or on
subjects named here), and `forest_synthesis`, which writes one forest synthesis as a NIfTI on its inputs' grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..baselines.replica import ReplicaRegressor
from ..data.normaliser import Normaliser
from ..data.subjects import LoadedSubject, discover_subjects, load_subject
from ..errors import InputError
from ..io.nifti import check_same_grid, load_volume, save_like
from ..runtime.prepared_inputs import normalise_inputs
from ..runtime.reporting import Reporter


def _default_jobs() -> int:
    """The forest's worker count: the command's --threads (torch's thread count; one per core by default)."""
    import torch

    return max(1, torch.get_num_threads())


class ReplicaPredictor:
    """Fits one forest per (input subset, target) on the training subjects when first asked, then predicts.

    Each forest learns from the training subjects that have its inputs and its target (subjects may lack some of
    the modalities, e.g. a diffusion subject without T1; each subject on its own grid); a subset no training subject
    has is refused with one line."""

    def __init__(self, train_data: Path, subjects: list[str], modalities: list[str], seed: int = 0,
                 reporter: Reporter | None = None, normaliser: Normaliser = Normaliser(),
                 n_jobs: int | None = None) -> None:
        found = {s.name: s for s in discover_subjects(train_data)}
        missing = [name for name in subjects if name not in found]
        if missing or not subjects:
            raise InputError(f"{train_data}: baseline training subjects not found: "
                             f"{', '.join(missing) or 'none given'}")
        self.train_data = train_data
        self.subjects = [found[name] for name in subjects]
        self.modalities, self.seed, self.normaliser = modalities, seed, normaliser
        self.n_jobs = n_jobs or _default_jobs()
        self.reporter = reporter or Reporter()
        self._loaded: dict[str, LoadedSubject] = {}
        self._forests: dict[tuple[tuple[str, ...], str], ReplicaRegressor] = {}
        self.used: dict[tuple[tuple[str, ...], str], list[str]] = {}  # (subset, target) -> subjects it learnt from

    def _subject(self, index: int) -> LoadedSubject:
        """A training subject with every one of `modalities` it has, loaded once (encoder units; targets in paper
        units)."""
        subject = self.subjects[index]
        if subject.name not in self._loaded:
            present = [m for m in self.modalities if m in subject.files]
            self._loaded[subject.name] = load_subject(subject, present, normaliser=self.normaliser)
        return self._loaded[subject.name]

    def _training_set(self, subset: tuple[str, ...], target: str) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
        """(inputs + target, brain mask) of each training subject that has the subset and the target."""
        needed = (*subset, target)
        usable = [i for i, s in enumerate(self.subjects) if all(m in s.files for m in needed)]
        if not usable:
            raise InputError(f"{self.train_data}: no baseline training subject has {'+'.join(subset)} and {target} "
                             f"(subjects: {', '.join(s.name for s in self.subjects)})")
        self.used[(subset, target)] = [self.subjects[i].name for i in usable]
        loaded = [self._subject(i) for i in usable]
        return [({**{m: s.volumes[m] for m in subset}, target: s.targets[target]}, s.mask) for s in loaded]

    def __call__(self, inputs: dict[str, np.ndarray], mask: np.ndarray, subsets: list[tuple[str, ...]],
                 target: str) -> dict[tuple[str, ...], np.ndarray]:
        results = {}
        for subset in subsets:
            key = (subset, target)
            if key not in self._forests:
                training = self._training_set(subset, target)
                self.reporter.message(f"fitting the REPLICA-style forest for {target} from {'+'.join(subset)} on "
                                      f"{', '.join(self.used[key])}")
                self._forests[key] = ReplicaRegressor(subset, target, seed=self.seed, n_jobs=self.n_jobs).fit(training)
            results[subset] = self._forests[key].predict(inputs, mask)
        return results


def forest_synthesis(train_data: Path, subjects: list[str], inputs: dict[str, Path], target: str, out: Path,
                     seed: int = 0, n_jobs: int | None = None, force: bool = False,
                     reporter: Reporter | None = None) -> tuple[Path, list[str]]:
    """The forest's `target` from co-registered input files (modality -> path, one grid), trained on `subjects` of
    `train_data` (those that have the inputs and the target), written on the first input's grid and header; returns
    the file and the subjects the forest learnt from. Inputs are normalised as `eval --baseline replica` does."""
    volumes = {m: load_volume(p) for m, p in inputs.items()}
    check_same_grid(list(volumes.values()))
    prepared = normalise_inputs({m: v.data for m, v in volumes.items()})
    subset = tuple(inputs)
    predictor = ReplicaPredictor(train_data, subjects, [*subset, target], seed, reporter, n_jobs=n_jobs)
    synthesis = predictor(prepared.volumes, prepared.mask, [subset], target)[subset]
    descrip = f"REPLICA-style forest {target} from {'+'.join(subset)}"
    path = save_like(synthesis, next(iter(volumes.values())), out, force=force, descrip=descrip)
    return path, predictor.used[(subset, target)]
