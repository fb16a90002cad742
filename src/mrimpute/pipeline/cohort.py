"""Synthesis over a whole dataset: plan the missing contrasts of every subject (cohort_plan: each subject's model
chosen by its inputs, each checkpoint read once), write them through a synthesis session as a BIDS derivative with
provenance sidecars, skip what is up to date, and carry on past a failing subject."""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from ..data.subjects import dataset_folder
from ..errors import InputError, MrimputeError, OutputError
from ..runtime.device import resolve_device
from ..runtime.model_loading import ModelShelf, OpenModel, open_model
from ..runtime.reporting import Reporter
from ..runtime.session import SynthesisRequest, SynthesisSession
from .cohort_bids import BIDS_VERSION, output_path, source_uri, write_dataset_description
from .cohort_plan import CohortTask, decide_outputs, failure_reason, plan_cohort, plan_rows, relative, row

DERIVATIVE_NAME = "mrimpute"
__all__ = ["BIDS_VERSION", "output_path", "run_cohort", "write_dataset_description"]


@functools.lru_cache(maxsize=4)
def _worker_model(path: Path) -> OpenModel:
    """A worker process's model (jobs > 1 run on the CPU), read once per process."""
    return open_model(path, "cpu")


def process_task(task: CohortTask, root: Path, model: OpenModel | None, batch_size: int, force: bool,
                 strict: bool = False, skull_strip: bool = False) -> tuple[list[dict], list[str]]:
    """Synthesise one subject's missing outputs that are not up to date; any user error fails the subject only.
    Returns its rows and the warnings about its inputs (`<file>: <message>`, also recorded in the sidecars).
    `model` is the task's model opened by the caller, or None in a worker process (opened there once)."""
    entry, name = task.entry, task.model.name
    warnings: list[str] = []
    try:
        rows, todo, input_sums = decide_outputs(task, root, force)
        if todo:
            records = [{"modality": m, "path": relative(p, root), "sha256": input_sums[relative(p, root)]}
                       for m, p in task.inputs.items()]
            request = SynthesisRequest(
                task.inputs, outputs=todo, strict=strict, skull_strip=skull_strip, batch_size=batch_size,
                force=True,  # our own earlier output (sidecar stale or missing after a killed run) is redone
                provenance_inputs=records,
                provenance_extra={"Sources": [source_uri(p, root) for p in task.inputs.values()]})  # bids:raw:...
            SynthesisSession(model or _worker_model(task.model)).synthesize(request, warn=warnings.append)
            rows.update({t: row(entry, t, "done", relative(p, root), name) for t, p in todo.items()})
        return [rows[t] for t in task.outputs], warnings
    except (MrimputeError, OSError) as exc:
        return [row(entry, t, "failed", failure_reason(entry, exc), name) for t in task.outputs], warnings


def subject_note(task: CohortTask, rows: list[dict]) -> str:
    """One line on a finished subject for logs: `sub-X [ses-Y]: flair done, t1c skipped (up to date)`, with the
    reason of a failure, and the model when it was chosen over the default by the subject's inputs."""
    entry = task.entry
    name = f"sub-{entry.subject}" + (f" ses-{entry.session}" if entry.session else "")
    model = f"; model {task.model.name}" if task.note else ""
    if rows and all(row["status"] == "failed" for row in rows) and len({row["detail"] for row in rows}) == 1:
        return f"{name}: failed ({rows[0]['detail']}){model}"
    parts = [f"{row['target']} {row['status']}" + (f" ({row['detail']})" if row["status"] != "done" else "")
             for row in rows]
    return f"{name}: {', '.join(parts)}{model}"


def _worker_init() -> None:
    torch.set_num_threads(1)


def _outcomes(tasks: list[CohortTask], root: Path, models: ModelShelf, device: str, jobs: int,
              options: dict) -> Iterator[tuple[int, tuple[list[dict], list[str]]]]:
    """Each task's index and outcome as it finishes: in worker processes (jobs > 1 on the CPU) or here."""
    if jobs > 1 and resolve_device(device).type == "cpu" and len(tasks) > 1:
        context = multiprocessing.get_context("spawn")  # no forking of a process whose torch threads run
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_worker_init) as pool:
            futures = {pool.submit(process_task, task, root, None, **options): i for i, task in enumerate(tasks)}
            for future in as_completed(futures):
                yield futures[future], future.result()
    else:
        for i, task in enumerate(tasks):
            yield i, process_task(task, root, models.open(task.model), **options)


def run_cohort(root: Path, deriv_root: Path | None = None, model_path: Path | None = None, device: str = "auto",
               batch_size: int = 0, dry_run: bool = False, jobs: int = 1, force: bool = False,
               reporter: Reporter | None = None, strict: bool = False, skull_strip: bool = False,
               warn: Callable[[str], None] | None = None, participants: list[str] | None = None) -> list[dict]:
    """Plan, and unless dry_run synthesise, every missing contrast of every subject; returns one row per output
    (status planned, done, skipped or failed, with a detail and the model). Without `model_path` each subject gets
    the shipped model its inputs call for (the default, or models/diffusion.pt for dwi/adc). Each warning about a
    subject's inputs goes to `warn` as `<file>: <message>` (default: the reporter's messages); strict: a subject
    with one fails."""
    reporter = reporter or Reporter()
    warn = warn or (lambda text: reporter.message(f"warning: {text}"))
    root = Path(root)
    base = dataset_folder(root)  # a CSV manifest's folder: where relative paths and the derivative start
    deriv_root = Path(deriv_root) if deriv_root else base / "derivatives" / DERIVATIVE_NAME
    models = ModelShelf(model_path, device)
    if models.given is not None:
        models.open(models.given)  # a model given is read (or refused) before anything else
    if os.path.realpath(deriv_root) in (os.path.realpath(root), os.path.realpath(base)):
        raise OutputError(f"{deriv_root}: the derivative folder cannot be the dataset itself")
    tasks, rows, warnings = plan_cohort(root, deriv_root, models, participants)
    if not tasks and not rows:
        raise InputError(f"{root}: no subjects found (expected sub-*/[ses-*/]anat/*_T1w.nii.gz ..., "
                         "<subject>/<modality>.nii.gz, BraTS names, an nnU-Net imagesTr/ or a CSV manifest)")
    for warning in warnings:
        reporter.message(f"warning: {warning}")
    if dry_run:  # the same decisions as a real run, nothing written
        return [row for task in tasks for row in plan_rows(task, base, force)] + rows
    try:
        deriv_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{deriv_root}: cannot create the derivative folder ({exc.strerror or exc})") from None
    write_dataset_description(deriv_root, base)
    results: list[list[dict]] = [[] for _ in tasks]
    options = dict(batch_size=batch_size, force=force, strict=strict, skull_strip=skull_strip)
    reporter.start("subjects", len(tasks))
    try:
        for i, (task_rows, notes) in _outcomes(tasks, base, models, device, jobs, options):
            results[i] = task_rows
            for note in notes:
                warn(note)
            reporter.advance(note=subject_note(tasks[i], task_rows))
    finally:
        reporter.finish()
    return [row for block in results for row in block] + rows
