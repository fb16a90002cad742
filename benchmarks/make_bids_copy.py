"""Make a BIDS-shaped copy of the co-registered subjects, with some contrasts dropped, for `synth --dataset`.

    python benchmarks/make_bids_copy.py --source ../shared/data/coregistered --out DIR
        [--drop sub:modality,...] [--seed 0]

Every subject folder of SOURCE holding t1/t1c/t2/flair .nii.gz files becomes

    DIR/sub-<label>/anat/sub-<label>_T1w.nii.gz, _ce-gd_T1w.nii.gz, _T2w.nii.gz, _FLAIR.nii.gz

(the label is the folder name with every non-alphanumeric character removed), plus DIR/dataset_description.json
(a BIDS raw dataset) and DIR/code/dropped.json (which contrast was left out of which subject, for scoring).
The files are copied, never linked, so nothing run on the copy can modify the sources.

By default one contrast is left out of each subject, a different one from subject to subject (the order of the
four contrasts is shuffled with --seed and dealt round-robin over the sorted subjects), so that
`mrimpute synth --dataset DIR` has something to synthesise everywhere. --drop SUB:MODALITY,... replaces that
list (SUB: folder name or label; MODALITY: t1, t1c, t2 or flair; several per subject allowed); --drop none
copies everything.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from pathlib import Path

from mrimpute.data.bids import bids_label

MODALITIES = ("t1", "t1c", "t2", "flair")
BIDS_NAMES = {"t1": "T1w", "t1c": "ce-gd_T1w", "t2": "T2w", "flair": "FLAIR"}


def find_subjects(source: Path) -> dict[str, dict[str, Path]]:
    """Folder name -> {modality: file} for every subject folder of source with at least one of the contrasts."""
    subjects = {}
    for folder in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = {m: folder / f"{m}.nii.gz" for m in MODALITIES if (folder / f"{m}.nii.gz").is_file()}
        if files:
            subjects[folder.name] = files
    return subjects


def default_drops(names: list[str], seed: int) -> dict[str, list[str]]:
    """One contrast per subject; consecutive subjects (sorted) lose different contrasts, order shuffled by seed."""
    order = list(MODALITIES)
    random.Random(seed).shuffle(order)
    return {name: [order[i % len(order)]] for i, name in enumerate(sorted(names))}


def parse_drops(text: str, names: list[str]) -> dict[str, list[str]]:
    """'sub:modality,...' (sub: folder name or label) -> folder name -> modalities; 'none' -> nothing."""
    drops: dict[str, list[str]] = {}
    if text.strip().lower() in ("", "none"):
        return drops
    by_label = {bids_label(n): n for n in names}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        subject, sep, modality = item.rpartition(":")
        subject = subject.removeprefix("sub-")
        name = subject if subject in names else by_label.get(subject)
        if not sep or name is None:
            raise ValueError(f"--drop {item!r}: expected SUBJECT:MODALITY with a subject of {', '.join(names)}")
        if modality not in MODALITIES:
            raise ValueError(f"--drop {item!r}: modality must be one of {', '.join(MODALITIES)}")
        drops.setdefault(name, []).append(modality)
    return drops


def make_copy(source: Path, out: Path, drops: dict[str, list[str]] | None = None, seed: int = 0) -> list[dict]:
    """Write the BIDS copy; returns one row per subject (label, copied, dropped). drops=None: the seeded default."""
    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise ValueError(f"{source}: source folder not found")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: exists and is not an empty folder")
    if out.resolve() == source.resolve() or source.resolve() in out.resolve().parents:
        raise ValueError(f"{out}: must not be inside the source folder")
    subjects = find_subjects(source)
    if not subjects:
        raise ValueError(f"{source}: no subject folders with {', '.join(m + '.nii.gz' for m in MODALITIES)}")
    labels = {name: bids_label(name) for name in subjects}
    clashes = sorted({lab for lab in labels.values() if list(labels.values()).count(lab) > 1 or not lab})
    if clashes:
        raise ValueError(f"subject folders give empty or duplicate BIDS labels: {', '.join(clashes) or '(empty)'}")
    drops = default_drops(list(subjects), seed) if drops is None else drops
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, files in subjects.items():
        label = labels[name]
        anat = out / f"sub-{label}" / "anat"
        anat.mkdir(parents=True)
        dropped = [m for m in MODALITIES if m in drops.get(name, []) and m in files]
        copied = []
        for modality, path in files.items():
            if modality in dropped:
                continue
            shutil.copyfile(path, anat / f"sub-{label}_{BIDS_NAMES[modality]}.nii.gz")  # a copy, not a link
            copied.append(modality)
        rows.append({"subject": name, "label": f"sub-{label}", "copied": copied, "dropped": dropped,
                     "missing in source": [m for m in MODALITIES if m not in files]})
    description = {"Name": f"mrimpute benchmark copy of {source.name}", "BIDSVersion": "1.8.0", "DatasetType": "raw",
                   "GeneratedBy": [{"Name": "mrimpute benchmarks/make_bids_copy.py",
                                    "Description": f"copy of {source} with contrasts dropped (seed {seed})"}]}
    (out / "dataset_description.json").write_text(json.dumps(description, indent=2) + "\n")
    (out / "code").mkdir()
    (out / "code" / "dropped.json").write_text(
        json.dumps({row["label"]: row["dropped"] for row in rows}, indent=2) + "\n")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder of co-registered subject folders")
    parser.add_argument("--out", type=Path, required=True, help="new (or empty) folder for the BIDS copy")
    parser.add_argument("--drop", help="SUB:MODALITY,... to leave out (default: one per subject, seeded); 'none'")
    parser.add_argument("--seed", type=int, default=0, help="seed of the default drop list (default 0)")
    args = parser.parse_args(argv)
    try:
        names = list(find_subjects(args.source)) if args.source.is_dir() else []
        drops = None if args.drop is None else parse_drops(args.drop, names)
        rows = make_copy(args.source, args.out, drops, args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"BIDS copy in {args.out}")
    for key in rows[0]:
        table.add_column(key)
    for row in rows:
        table.add_row(*(", ".join(v) if isinstance(v, list) else str(v) for v in row.values()))
    Console().print(table)
    print(f"{len(rows)} subject(s), {sum(len(r['dropped']) for r in rows)} contrast(s) dropped; "
          f"next: mrimpute synth --dataset {args.out} --model MODEL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
