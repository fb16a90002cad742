"""Synthesis over a whole dataset: plan the missing contrasts of every subject, write them as a BIDS derivative with
provenance sidecars, skip what is up to date, and carry on past a failing subject."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import ModelConfig
from ..data.bids import SKIPPED_FOLDERS, DatasetSubject, discover_dataset
from ..data.subjects import dataset_folder, dataset_layout
from ..errors import InputError, MrimputeError, OutputError
from ..io.atomic import output_exists
from ..io.checksum import sha256_file
from ..io.sidecar import OUTPUT_UNITS, sidecar_path, write_sidecar
from .cohort_bids import BIDS_VERSION, ce_labels, output_path, participant_filter, source_uri, write_dataset_description
from .device import resolve_device
from .model_loading import OpenModel, default_model_path, open_model
from .outputs import write_outputs
from .reporting import Reporter
from .result_sidecar import result_sidecar
from .synthesize import synthesize

DERIVATIVE_NAME = "mrimpute"
__all__ = ["BIDS_VERSION", "output_path", "run_cohort", "write_dataset_description"]
NORMALISATION = OUTPUT_UNITS


@dataclass
class CohortTask:
    """One subject/session: the model's inputs it has, and where each missing output goes."""

    entry: DatasetSubject
    inputs: dict[str, Path]
    outputs: dict[str, Path]


def plan_cohort(root: Path, deriv_root: Path, config: ModelConfig, participants: list[str] | None = None
                ) -> tuple[list[CohortTask], list[dict], list[str]]:
    """Tasks for every subject (of `participants`, BIDS-Apps labels, when given) with something to do, rows for
    subjects skipped with a reason, and warnings."""
    tasks, rows, warnings = [], [], []
    entries = discover_dataset(root, exclude=[deriv_root])
    ce_of_subject, ce_of_dataset = ce_labels(entries)  # a synthetic T1c is named with the dataset's ce- label
    folders = {entry.name: entry.folder for entry in entries if entry.folder is not None}
    refuse_inside_subject(deriv_root, folders.values())
    if os.path.realpath(Path(deriv_root).parent) == os.path.realpath(root) and Path(deriv_root).is_dir():
        # discovery skipped the derivative folder itself: is it a subject's folder?
        refuse_inside_subject(deriv_root, [e.folder for e in discover_dataset(root) if e.folder is not None])
    if dataset_layout(root) == "folders":  # a CSV or an nnU-Net dataset has no subject folders to count
        warnings.extend(_empty_folder_warnings(root, deriv_root, set(folders.values())))
    for entry in participant_filter(entries, participants, root):
        warnings.extend(entry.warnings)
        usable = {m: entry.files[m] for m in config.inputs if m in entry.files}
        missing = [m for m in config.outputs if m not in entry.files]
        if not usable:
            rows.append(_row(entry, "-", "skipped", f"no input the model knows (has {', '.join(entry.files)}; "
                                                    f"model takes {', '.join(config.inputs)})"))
        elif not missing:
            rows.append(_row(entry, "-", "skipped", "has every output of the model"))
        else:
            ce = ce_of_subject.get(entry.subject, ce_of_dataset)
            tasks.append(CohortTask(entry, usable, {t: output_path(deriv_root, entry, t, ce) for t in missing}))
    return tasks, rows, warnings


def _is_within(path: Path, folder: Path) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def refuse_inside_subject(deriv_root: Path, subject_folders) -> None:
    """The derivative folder may not lie in a subject's raw-data folder."""
    for folder in subject_folders:
        if _is_within(deriv_root, folder):
            raise OutputError(f"{deriv_root}: the derivative folder is inside subject folder {folder}; "
                              "choose --out outside the subjects' raw data")


def _empty_folder_warnings(root: Path, deriv_root: Path, subject_folders: set[Path]) -> list[str]:
    """One warning counting the top-level folders that hold no recognised scan (skipped otherwise silently)."""
    try:
        candidates = sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    empty = [p.name for p in candidates if p not in subject_folders and p.name not in SKIPPED_FOLDERS
             and not _is_within(deriv_root, p) and not _is_within(p, deriv_root)]
    if not empty:
        return []
    shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
    return [f"{root}: {len(empty)} subject folder(s) hold no recognised scan and were skipped: {shown}"]


def _row(entry: DatasetSubject, target: str, status: str, detail: str) -> dict:
    return {"subject": f"sub-{entry.subject}", "session": entry.session or "", "target": target,
            "status": status, "detail": detail}


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _up_to_date(nifti: Path, input_sums: dict[str, str], model_sum: str) -> bool:
    sidecar = sidecar_path(nifti)
    if not nifti.is_file() or not sidecar.is_file():
        return False
    try:
        recorded = json.loads(sidecar.read_text())
        inputs = {item["path"]: item["sha256"] for item in recorded["Inputs"]}
        return inputs == input_sums and recorded["Model"]["sha256"] == model_sum
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _other_model(nifti: Path, model_sum: str) -> str | None:
    """The model file named in an existing output's sidecar when another model made it (else None)."""
    sidecar = sidecar_path(nifti)
    if not output_exists(nifti) or not sidecar.is_file():
        return None
    try:
        model = json.loads(sidecar.read_text())["Model"]
        return None if model["sha256"] == model_sum else str(model.get("file") or "another model")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def decide_outputs(task: CohortTask, root: Path, model_sum: str, force: bool
                   ) -> tuple[dict[str, dict], dict[str, Path], dict[str, str]]:
    """Which outputs are kept (rows: up to date, or made by another model and no --force) and which are to do;
    and the inputs' sha256. The real run and --dry-run both decide here."""
    input_sums = {_relative(p, root): sha256_file(p) for p in task.inputs.values()}
    rows, todo = {}, {}
    for target, path in task.outputs.items():
        if force:
            todo[target] = path
        elif _up_to_date(path, input_sums, model_sum):
            rows[target] = _row(task.entry, target, "skipped", "up to date")
        elif (other := _other_model(path, model_sum)) is not None:
            rows[target] = _row(task.entry, target, "skipped", f"made by another model ({other}); "
                                                               "--force replaces it")
        else:  # our own earlier output (sidecar missing after a killed run, or inputs changed) is redone
            todo[target] = path
    return rows, todo, input_sums


def _failure_reason(entry: DatasetSubject, exc: Exception) -> str:
    if isinstance(exc, OSError):  # e.g. an output folder that cannot be created
        return f"{exc.filename or entry.name}: {exc.strerror or exc}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def plan_rows(task: CohortTask, root: Path, model_sum: str, force: bool) -> list[dict]:
    """The --dry-run rows of one subject: planned, skipped (as a real run would) or failed."""
    try:
        rows, todo, _ = decide_outputs(task, root, model_sum, force)
    except (MrimputeError, OSError) as exc:
        return [_row(task.entry, t, "failed", _failure_reason(task.entry, exc)) for t in task.outputs]
    for target, path in todo.items():
        rows[target] = _row(task.entry, target, "planned", f"{_relative(path, root)} from {'+'.join(task.inputs)}")
    return [rows[t] for t in task.outputs]


def refuse_findings(findings: dict[str, list[str]]) -> None:
    """`synth --strict`: the first warning about an input, as a one-line error (nothing is written)."""
    notes = [(path, message) for path, messages in findings.items() for message in messages]
    if notes:
        path, message = notes[0]
        more = f" (and {len(notes) - 1} more warning(s))" if len(notes) > 1 else ""
        raise InputError(f"{path}: {message}{more}; --strict refuses inputs with warnings")


def process_task(task: CohortTask, root: Path, model: Path | OpenModel, model_sum: str, device: str,
                 batch_size: int, force: bool, strict: bool = False, skull_strip: bool = False
                 ) -> tuple[list[dict], list[str]]:
    """Synthesise one subject's missing outputs that are not up to date; any user error fails the subject only.
    Returns its rows and the warnings about its inputs (`<file>: <message>`, also recorded in the sidecars).
    `model` is opened once by the caller, or (in a worker process) a checkpoint path."""
    model_path = model.path if isinstance(model, OpenModel) else Path(model)
    entry = task.entry
    warnings: list[str] = []
    try:
        rows, todo, input_sums = decide_outputs(task, root, model_sum, force)
        if todo:
            result = synthesize(task.inputs, list(todo), model, device, batch_size, None,
                                skull_strip=skull_strip, check_findings=refuse_findings if strict else None)
            warnings = [f"{path}: {message}" for path, messages in result.findings.items() for message in messages]
            inputs = [{"modality": m, "path": _relative(p, root), "sha256": input_sums[_relative(p, root)]}
                      for m, p in task.inputs.items()]
            for target, path in todo.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                # our own earlier output (sidecar stale or missing after a killed run) is redone without --force
                write_outputs(result, {target: path}, force=True)
                sidecar = result_sidecar(target, result, inputs, model_path, model_sum)
                sidecar["Sources"] = [source_uri(p, root) for p in task.inputs.values()]  # BIDS URIs: bids:raw:...
                write_sidecar(sidecar_path(path), sidecar, force=True)
                rows[target] = _row(entry, target, "done", _relative(path, root))
        return [rows[t] for t in task.outputs], warnings
    except (MrimputeError, OSError) as exc:
        return [_row(entry, t, "failed", _failure_reason(entry, exc)) for t in task.outputs], warnings


def subject_note(task: CohortTask, rows: list[dict]) -> str:
    """One line on a finished subject for logs: `sub-X [ses-Y]: flair done, t1c skipped (up to date)`, with the
    reason of a failure."""
    entry = task.entry
    name = f"sub-{entry.subject}" + (f" ses-{entry.session}" if entry.session else "")
    if rows and all(row["status"] == "failed" for row in rows) and len({row["detail"] for row in rows}) == 1:
        return f"{name}: failed ({rows[0]['detail']})"
    parts = [f"{row['target']} {row['status']}" + (f" ({row['detail']})" if row["status"] != "done" else "")
             for row in rows]
    return f"{name}: {', '.join(parts)}"


def _worker_init() -> None:
    torch.set_num_threads(1)


def run_cohort(root: Path, deriv_root: Path | None = None, model_path: Path | None = None, device: str = "auto",
               batch_size: int = 0, dry_run: bool = False, jobs: int = 1, force: bool = False,
               reporter: Reporter | None = None, strict: bool = False, skull_strip: bool = False,
               warn: Callable[[str], None] | None = None, participants: list[str] | None = None) -> list[dict]:
    """Plan, and unless dry_run synthesise, every missing contrast of every subject; returns one row per output
    (status planned, done, skipped or failed, with a detail). Each warning about a subject's inputs goes to
    `warn` as `<file>: <message>` (default: the reporter's messages); strict: a subject with one fails."""
    reporter = reporter or Reporter()
    warn = warn or (lambda text: reporter.message(f"warning: {text}"))
    root = Path(root)
    base = dataset_folder(root)  # a CSV manifest's folder: where relative paths and the derivative start
    deriv_root = Path(deriv_root) if deriv_root else base / "derivatives" / DERIVATIVE_NAME
    opened = open_model(model_path or default_model_path(), device)  # read once for every subject
    model_path = opened.path
    if os.path.realpath(deriv_root) in (os.path.realpath(root), os.path.realpath(base)):
        raise OutputError(f"{deriv_root}: the derivative folder cannot be the dataset itself")
    tasks, rows, warnings = plan_cohort(root, deriv_root, opened.config, participants)
    if not tasks and not rows:
        raise InputError(f"{root}: no subjects found (expected sub-*/[ses-*/]anat/*_T1w.nii.gz ..., "
                         "<subject>/<modality>.nii.gz, BraTS names, an nnU-Net imagesTr/ or a CSV manifest)")
    root = base
    for warning in warnings:
        reporter.message(f"warning: {warning}")
    if dry_run:  # the same decisions as a real run, nothing written
        model_sum = sha256_file(model_path)
        return [row for task in tasks for row in plan_rows(task, root, model_sum, force)] + rows
    try:
        deriv_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{deriv_root}: cannot create the derivative folder ({exc.strerror or exc})") from None
    write_dataset_description(deriv_root, base)
    model_sum = sha256_file(model_path)
    results: list[list[dict]] = [[] for _ in tasks]
    reporter.start("subjects", len(tasks))
    try:
        if jobs > 1 and resolve_device(device).type == "cpu" and len(tasks) > 1:
            context = multiprocessing.get_context("spawn")  # no forking of a process whose torch threads run
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_worker_init) as pool:
                futures = {pool.submit(process_task, task, root, model_path, model_sum, "cpu", batch_size, force,
                                       strict, skull_strip): i
                           for i, task in enumerate(tasks)}
                for future in as_completed(futures):
                    results[futures[future]], notes = future.result()
                    for note in notes:
                        warn(note)
                    reporter.advance(note=subject_note(tasks[futures[future]], results[futures[future]]))
        else:
            for i, task in enumerate(tasks):
                results[i], notes = process_task(task, root, opened, model_sum, device, batch_size, force,
                                                 strict, skull_strip)
                for note in notes:
                    warn(note)
                reporter.advance(note=subject_note(task, results[i]))
    finally:
        reporter.finish()
    return [row for block in results for row in block] + rows
