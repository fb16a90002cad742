"""How bright are a lesion-aware model's synthetic lesions? Lesion-to-NAWM contrast of `mrimpute add-lesion` beside
the real one (issue "a model worth using": within 15% on ms07 and on a brats18 test subject).

    nice -n 19 .venv/bin/python benchmarks/lesion_contrast.py [--model models/lesion.pt] [--out runs/lesion-contrast]
        [--data ../shared/data] [--results benchmarks/results/lesion-contrast] [--threads 1] [--force]
        [--part test|validation]

Cases (all on subjects of models/split.toml's test part, which no model saw in training or model selection):
- a test subject's own lesion mask drawn into a FLAIR synthesised from its other contrasts (ms07 from T1+T2 and
  from T1+T1c+T2; brats18-tcia02-370 and brats18-cbica-aqo from T1+T1c+T2, their expert tumour labels, every label
  counting), against the same subject's real FLAIR;
- ms07's mask drawn into a FLAIR synthesised from the ICBM 2009a atlas T1 (a healthy brain; the mask moved by
  `--lesion-ref`'s rigid registration), against ms07's real FLAIR.
With `--part validation`, the cases are instead models/split.toml's validation subjects that have an expert lesion
mask (their own mask, FLAIR from T1+T1c+T2): what may choose between lesion models without touching a test subject.
The measures are `add-lesion --report`'s (src/mrimpute/lesions/measures.py): mean in the lesion over the mean in
normal-appearing white matter. `relative` = synthetic / real - 1.

Writes --out/lesion_contrast.{md,csv,json}, then copies them to --results.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 0.15
SPLIT = ROOT / "models" / "split.toml"


def _own_mask_case(folder: Path, subject: str, inputs: list[str]) -> dict:
    """A subject's own mask drawn into a FLAIR synthesised from its `inputs`, against its real FLAIR."""
    return {"case": f"{subject} own mask, flair from {'+'.join(inputs)}",
            "inputs": {k: folder / subject / f"{k}.nii.gz" for k in inputs},
            "mask": folder / subject / "lesion.nii.gz", "source": folder / subject, "ref": None}


def cases(data: Path) -> list[dict]:
    """name, recipient inputs, mask, source subject (its real lesions), optional --lesion-ref."""
    co = data / "coregistered"
    own = [("ms07", ["t1", "t2"]), ("ms07", ["t1", "t1c", "t2"]),
           ("brats18-tcia02-370", ["t1", "t1c", "t2"]), ("brats18-cbica-aqo", ["t1", "t1c", "t2"])]
    rows = [_own_mask_case(co, s, m) for s, m in own]
    rows.append({"case": "ms07 mask into ICBM 2009a, flair from t1",
                 "inputs": {"t1": data / "atlas" / "icbm2009a" / "t1.nii.gz"},
                 "mask": co / "ms07" / "lesion.nii.gz", "source": co / "ms07", "ref": co / "ms07" / "t1.nii.gz"})
    return rows


def validation_cases(data: Path, split: Path = SPLIT) -> list[dict]:
    """The split's validation subjects with an expert lesion mask: own mask, FLAIR from T1+T1c+T2."""
    from mrimpute.data.split import load_split

    co = data / "coregistered"
    return [_own_mask_case(co, s, ["t1", "t1c", "t2"]) for s in load_split(split).validation
            if (co / s / "lesion.nii.gz").is_file()]


def measure(case: dict, model: Path, out: Path, threads: int, force: bool) -> dict:
    """Run add-lesion for one case (skipped when its report exists) and read its report."""
    slug = case["case"].split(",")[0].replace(" ", "-") + "-" + "+".join(case["inputs"])
    report = out / f"{slug}.json"
    if force or not report.exists():
        command = [str(ROOT / ".venv" / "bin" / "mrimpute"), "add-lesion", "--model", str(model),
                   "--lesion-mask", str(case["mask"]), "--source-subject", str(case["source"]),
                   "--out", str(out / f"{slug}.nii.gz"), "--report", str(report),
                   "--preview", str(out / f"{slug}.png"), "--threads", str(threads), "--device", "cpu", "--force"]
        for modality, path in case["inputs"].items():
            command += [f"--{modality}", str(path)]
        if case["ref"] is not None:
            command += ["--lesion-ref", str(case["ref"])]
        if subprocess.run(command).returncode != 0:
            raise SystemExit(f"add-lesion failed for '{case['case']}' (its error is above)")
    measures = json.loads(report.read_text())
    synthetic, real = measures["synthetic_lesion_to_nawm"], measures["real_lesion_to_nawm"]
    relative = synthetic / real - 1
    return {"case": case["case"], "synthetic": round(synthetic, 4), "real": round(real, 4),
            "relative": round(relative, 4), f"within {TOLERANCE:.0%}": abs(relative) <= TOLERANCE,
            "dice": round(measures["dice_hyperintensities_vs_mask"], 4)}


def write(rows: list[dict], out: Path, model: Path) -> list[Path]:
    """The table as Markdown, CSV and JSON in --out."""
    header = list(rows[0])
    lines = [f"Lesion-to-NAWM contrast of `{model}`'s synthetic lesions (`benchmarks/lesion_contrast.py`)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
    md, csv_path, js = out / "lesion_contrast.md", out / "lesion_contrast.csv", out / "lesion_contrast.json"
    md.write_text("\n".join(lines) + "\n")
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    js.write_text(json.dumps({"model": str(model), "rows": rows}, indent=2) + "\n")
    print("\n".join(lines))
    return [md, csv_path, js]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "lesion.pt")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "lesion-contrast")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--part", choices=("test", "validation"), default="test")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = cases(args.data) if args.part == "test" else validation_cases(args.data)
    if not chosen:
        raise SystemExit(f"{args.data}: no {args.part} subject of {SPLIT} has an expert lesion mask")
    rows = [measure(case, args.model, args.out, args.threads, args.force) for case in chosen]
    shown = args.model.resolve().relative_to(ROOT) if args.model.resolve().is_relative_to(ROOT) else args.model
    written = write(rows, args.out, shown)
    if args.results is not None:
        args.results.mkdir(parents=True, exist_ok=True)
        for path in written:
            shutil.copy2(path, args.results / path.name)


if __name__ == "__main__":
    main()
