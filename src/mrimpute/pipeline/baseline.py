"""Baseline predictors for `eval`: the REPLICA-style random forest, trained on the model's training subjects (or on
subjects named here), and `forest_synthesis`, which writes one forest synthesis as a NIfTI on its inputs' grid."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from ..baselines.replica import ReplicaRegressor
from ..data.normaliser import Normaliser
from ..data.subjects import LoadedSubject, discover_subjects, load_subject
from ..errors import InputError
from ..io.atomic import write_atomically
from ..io.nifti import check_same_grid, load_volume, save_like
from ..runtime.prepared_inputs import normalise_inputs
from ..runtime.reporting import Reporter


def _npy_bytes(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values)
    return buffer.getvalue()


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
                 n_jobs: int | None = None, cache_dir: Path | None = None) -> None:
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
        self.cache_dir = cache_dir  # each prediction kept here: a rerun (next session) fits only what is missing

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

    def _fit(self, subset: tuple[str, ...], target: str) -> ReplicaRegressor:
        training = self._training_set(subset, target)
        self.reporter.message(f"fitting the REPLICA-style forest for {target} from {'+'.join(subset)} on "
                              f"{', '.join(self.used[(subset, target)])}")
        return ReplicaRegressor(subset, target, seed=self.seed, n_jobs=self.n_jobs).fit(training)

    def _cached(self, subset: tuple[str, ...], target: str, inputs: dict[str, np.ndarray], mask: np.ndarray
                ) -> Path | None:
        """Where this prediction is kept: named by the forest (subset, target, seed, training subjects, normaliser)
        and by the input volumes' bytes."""
        if self.cache_dir is None:
            return None
        recipe = json.dumps([subset, target, self.seed, [s.name for s in self.subjects], self.normaliser.name])
        digest = hashlib.sha256(recipe.encode())
        for array in (mask, *(inputs[m] for m in subset)):
            digest.update(np.ascontiguousarray(array).tobytes())
        return self.cache_dir / f"{target}-from-{'+'.join(subset)}-{digest.hexdigest()[:20]}.npy"

    def _store(self, path: Path | None, volume: np.ndarray, mask: np.ndarray) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, lambda tmp: tmp.write_bytes(_npy_bytes(volume[mask])), force=True)

    def prepare(self, requests: list[tuple[dict[str, np.ndarray], np.ndarray, list[tuple[str, ...]], str]]) -> None:
        """With a cache: forest by forest, fit each (subset, target) some request still lacks, predict every request
        that needs it, keep the predictions and let the forest go (so an interrupted run loses one forest at most)."""
        if self.cache_dir is None:
            return
        keys = list(dict.fromkeys((subset, target) for _, _, subsets, target in requests for subset in subsets))
        for subset, target in keys:
            pending = [(inputs, mask) for inputs, mask, subsets, t in requests if t == target and subset in subsets
                       and not self._cached(subset, target, inputs, mask).is_file()]
            if pending:
                forest = self._fit(subset, target)
                for inputs, mask in pending:
                    self._store(self._cached(subset, target, inputs, mask), forest.predict(inputs, mask), mask)

    def __call__(self, inputs: dict[str, np.ndarray], mask: np.ndarray, subsets: list[tuple[str, ...]],
                 target: str) -> dict[tuple[str, ...], np.ndarray]:
        results = {}
        for subset in subsets:
            path = self._cached(subset, target, inputs, mask)
            if path is not None and path.is_file():
                results[subset] = np.zeros(mask.shape, dtype=np.float32)
                results[subset][mask] = np.load(path)
                continue
            if (subset, target) not in self._forests:
                self._forests[(subset, target)] = self._fit(subset, target)
            results[subset] = self._forests[(subset, target)].predict(inputs, mask)
            self._store(path, results[subset], mask)
        return results


def replica_for_eval(session, settings, reporter: Reporter, requests):
    """`eval --baseline replica`'s predictor in the model predictor's form ((view, subset) -> {"synthesis": ...}):
    forests trained on the subjects the model trained on, with its normaliser; with settings.baseline_cache they
    are fitted forest by forest over the `requests` ((target, subsets, inputs, mask, volumes) of every subject)
    first, each prediction kept there."""
    if settings.baseline != "replica":
        raise InputError(f"unknown baseline '{settings.baseline}': expected replica")
    if settings.views or settings.uncertainty or settings.mirror:
        raise InputError("--views, --axis, --mirror and --uncertainty apply to the model, not to --baseline")
    config = session.config
    training = session.model.metadata.get("training_subjects", [])
    modalities = list(dict.fromkeys(config.inputs + config.outputs))
    forest = ReplicaPredictor(settings.baseline_data or settings.data, training, modalities, reporter=reporter,
                              normaliser=session.normaliser, cache_dir=settings.baseline_cache)
    if settings.baseline_cache is not None:
        forest.prepare([(inputs, mask, subsets, target) for target, subsets, inputs, mask, _ in requests])

    def predict(inputs: dict[str, np.ndarray], mask: np.ndarray, subsets: list[tuple[str, ...]],
                target: str, lesion: np.ndarray | None = None) -> dict:
        answers = forest(inputs, mask, subsets, target)
        return {("", subset): {"synthesis": volume} for subset, volume in answers.items()}

    return predict


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
