"""The plan of `synth --dataset`: for every subject, the model it gets (the one given, else the shipped one its
inputs call for), the inputs that model takes, where each missing output goes, and which outputs are up to date,
made by another model, or to do. The dry run and the real run both decide here."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..data.bids import SKIPPED_FOLDERS, DatasetSubject, discover_dataset
from ..data.subjects import dataset_layout
from ..errors import MrimputeError, OutputError
from ..io.atomic import output_exists
from ..io.checksum import sha256_file
from ..io.sidecar import sidecar_path
from ..runtime.model_loading import ModelShelf
from .cohort_bids import ce_labels, output_path, participant_filter


@dataclass
class CohortTask:
    """One subject/session: the model chosen for it (and why, when it is not the default), the model's inputs it
    has, and where each missing output goes."""

    entry: DatasetSubject
    inputs: dict[str, Path]
    outputs: dict[str, Path]
    model: Path
    model_sum: str
    note: str | None = None


def plan_cohort(root: Path, deriv_root: Path, models: ModelShelf, participants: list[str] | None = None
                ) -> tuple[list[CohortTask], list[dict], list[str]]:
    """Tasks for every subject (of `participants`, BIDS-Apps labels, when given) with something to do, rows for
    subjects skipped with a reason, and warnings. Each subject gets the model `models` chooses for its contrasts
    (each checkpoint read once)."""
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
        model, note = models.choose(list(entry.files), partial=True)  # dwi/adc: models/diffusion.pt
        config, name = model.config, model.path.name
        usable = {m: entry.files[m] for m in config.inputs if m in entry.files}
        missing = [m for m in config.outputs if m not in entry.files]
        if not usable:
            rows.append(row(entry, "-", "skipped", f"no input the model knows (has {', '.join(entry.files)}; "
                                                   f"model takes {', '.join(config.inputs)})", name))
        elif not missing:
            rows.append(row(entry, "-", "skipped", "has every output of the model", name))
        else:
            ce = ce_of_subject.get(entry.subject, ce_of_dataset)
            tasks.append(CohortTask(entry, usable, {t: output_path(deriv_root, entry, t, ce) for t in missing},
                                    model.path, model.sha256, note))
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


def row(entry: DatasetSubject, target: str, status: str, detail: str, model: str) -> dict:
    """One row of the dataset table: an output of a subject (or '-'), its status and detail, and the model file."""
    return {"subject": f"sub-{entry.subject}", "session": entry.session or "", "target": target,
            "status": status, "detail": detail, "model": model}


def relative(path: Path, root: Path) -> str:
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


def decide_outputs(task: CohortTask, root: Path, force: bool
                   ) -> tuple[dict[str, dict], dict[str, Path], dict[str, str]]:
    """Which outputs are kept (rows: up to date, or made by another model and no --force) and which are to do;
    and the inputs' sha256. The real run and --dry-run both decide here."""
    model_sum, name = task.model_sum, task.model.name
    input_sums = {relative(p, root): sha256_file(p) for p in task.inputs.values()}
    rows, todo = {}, {}
    for target, path in task.outputs.items():
        if force:
            todo[target] = path
        elif _up_to_date(path, input_sums, model_sum):
            rows[target] = row(task.entry, target, "skipped", "up to date", name)
        elif (other := _other_model(path, model_sum)) is not None:
            rows[target] = row(task.entry, target, "skipped", f"made by another model ({other}); "
                                                              "--force replaces it", name)
        else:  # our own earlier output (sidecar missing after a killed run, or inputs changed) is redone
            todo[target] = path
    return rows, todo, input_sums


def failure_reason(entry: DatasetSubject, exc: Exception) -> str:
    if isinstance(exc, OSError):  # e.g. an output folder that cannot be created
        return f"{exc.filename or entry.name}: {exc.strerror or exc}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def plan_rows(task: CohortTask, root: Path, force: bool) -> list[dict]:
    """The --dry-run rows of one subject: planned, skipped (as a real run would) or failed."""
    try:
        rows, todo, _ = decide_outputs(task, root, force)
    except (MrimputeError, OSError) as exc:
        return [row(task.entry, t, "failed", failure_reason(task.entry, exc), task.model.name) for t in task.outputs]
    for target, path in todo.items():
        rows[target] = row(task.entry, target, "planned", f"{relative(path, root)} from {'+'.join(task.inputs)}",
                           task.model.name)
    return [rows[t] for t in task.outputs]
