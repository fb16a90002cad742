"""What the clinical benchmark (benchmarks/clinical_benchmark.py) scores: its rows, the model and the forest each row
uses (cross-fitted on the two subjects with diffusion), and the tables it writes. No work is done here."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

CLINICAL, ISLES = "clinical01", "isles22-0009"
DIFFUSION_SUBJECTS = (CLINICAL, ISLES)  # the only subjects with diffusion and a FLAIR
DIFFUSION = ("dwi", "adc")
TARGET = "flair"


@dataclass(frozen=True)
class Row:
    """One input set of one subject, FLAIR synthesised from it."""

    subject: str
    label: str
    inputs: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.label}_{'+'.join(self.inputs)}"

    @property
    def diffusion(self) -> bool:
        return any(m in DIFFUSION for m in self.inputs)


ROWS = (Row(CLINICAL, "a", ("t1", "t2")), Row(CLINICAL, "b", ("t1", "t2", "dwi")), Row(CLINICAL, "c", ("dwi",)),
        Row(CLINICAL, "d", ("t1",)), Row(ISLES, "e", ("dwi", "adc")), Row(ISLES, "f", ("dwi",)),
        Row(ISLES, "g", ("adc",)))
# a reference any synthesis should beat: one input, unchanged, scored as if it were the FLAIR
AS_IS = (Row(CLINICAL, "x", ("t2",)), Row(CLINICAL, "y", ("dwi",)), Row(ISLES, "z", ("dwi",)))


@dataclass(frozen=True)
class Choice:
    """The model or forest training of a row: a checkpoint or a subject list, and what to print about it."""

    path: Path | None
    subjects: tuple[str, ...]
    note: str
    data: Path | None = None  # where the forest's training subjects are


def model_for(row: Row, model: Path, diffusion_model: Path, crossfit: Path) -> Choice:
    """Without diffusion: the default model. clinical01 with diffusion: the encoders cross-fitted on isles22-0009
    (the shipped diffusion model learnt its encoders on clinical01). isles22-0009: the shipped diffusion model."""
    if not row.diffusion:
        return Choice(model, (), f"{model.name}")
    if row.subject == CLINICAL:
        return Choice(crossfit, (ISLES,), f"{crossfit.name}: {model.name} + dwi/adc encoders trained on {ISLES} "
                                           "(cross-fit, not shipped)")
    return Choice(diffusion_model, (CLINICAL,), f"{diffusion_model.name} (shipped): dwi/adc encoders trained on "
                                               f"{CLINICAL}, best epoch chosen on {ISLES}")


def forest_for(row: Row, split_training: tuple[str, ...], coregistered: Path, bench_data: Path,
               has: dict[str, set[str]]) -> Choice:
    """Without diffusion: the split's training subjects (coregistered). With diffusion: the other diffusion subject,
    when it has every input and the FLAIR; else no forest (path None, note = the reason)."""
    if not row.diffusion:
        return Choice(coregistered, split_training, f"{len(split_training)} training subjects of models/split.toml",
                      coregistered)
    others = [s for s in DIFFUSION_SUBJECTS if s != row.subject]
    usable = tuple(s for s in others if set(row.inputs) | {TARGET} <= has.get(s, set()))
    if not usable:
        lacking = "; ".join(f"{s} has {', '.join(sorted(has.get(s, set())))}" for s in others)
        return Choice(None, (), f"n/a: no subject besides {row.subject} has {'+'.join(row.inputs)} and FLAIR "
                                f"({lacking})")
    return Choice(bench_data, usable, ", ".join(usable), bench_data)


COLUMNS = ("subject", "inputs", "method", "trained on", "SSIM native", "PSNR native", "SSIM grid", "PSNR grid",
           "SSIM lesion", "PSNR lesion")


def _value(scores: dict | None, protocol: str, metric: str) -> str:
    if scores is None:
        return "pending"
    value = scores.get(protocol, {}).get(metric)
    return "-" if value is None else (f"{value:.4f}" if metric == "ssim" else f"{value:.2f}")


def table_row(row: Row, method: str, note: str, native: dict | None, grid: dict | None, na: bool = False) -> dict:
    """One line of the table: in-brain SSIM/PSNR on the FLAIR's native grid and on the preprocessed grid, and
    inside the stroke lesion (native grid) where the subject has one."""
    if na:
        values = ["n/a"] * 6
    else:
        values = [_value(native, "brain", "ssim"), _value(native, "brain", "psnr"), _value(grid, "brain", "ssim"),
                  _value(grid, "brain", "psnr"), _value(native, "brain@lesion", "ssim"),
                  _value(native, "brain@lesion", "psnr")]
    return dict(zip(COLUMNS, [row.subject, "+".join(row.inputs), method, note, *values]))


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows])


def write_tables(rows: list[dict], header: str, folder: Path) -> list[Path]:
    """clinical_benchmark.md (header + markdown table), .csv and .json in `folder`, each written whole."""
    folder.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
    contents = {"clinical_benchmark.md": f"{header}\n\n{markdown(rows)}\n", "clinical_benchmark.csv": text.getvalue(),
                "clinical_benchmark.json": json.dumps({"about": header, "rows": rows}, indent=2) + "\n"}
    written = []
    for name, content in contents.items():
        tmp = folder / f".{name}.tmp"
        tmp.write_text(content)
        tmp.replace(folder / name)
        written.append(folder / name)
    return written
