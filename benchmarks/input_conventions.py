"""Does `mrimpute synth` give the same FLAIR whatever intensity convention its inputs are written in?

    nice -n 19 .venv/bin/python benchmarks/input_conventions.py [--subject DIR] [--model PATH] [--out WORK]
        [--threads 1]

One co-registered subject (default /work/shared/data/coregistered/brats18-tcia02-370; its files are read where
they are and the converted copies go to --out, a work folder, default a temporary one: never into the project) is
written under each convention, the same for its T1, T1c and T2:

- original: the files as they are;
- z-scored: brain (voxels > 0) standardised to mean 0, sd 1, background the constant -5 (BraTS 2015 copies);
- min-max: float32 in 0-1 (divided by the volume's maximum);
- int16 slope 0.5: stored as round(x / 0.5) in int16 with scl_slope 0.5 (the same values, read through the slope);
- 20 saturated: 20 seeded brain voxels of each input set to 32767.

For each, `mrimpute synth --t1 --t1c --t2 --out flair_synth.nii.gz --threads 1` runs in a subprocess (nice 19), and
its FLAIR is scored against the subject's real FLAIR inside the brain (the real FLAIR's voxels > 0) with the
package's metric (mrimpute.metrics.in_brain_metrics: each volume divided by its brain mean, SSIM and PSNR over the
brain). Prints a markdown table: SSIM, PSNR, the change of SSIM from the original inputs, pass when that change is
at most 0.02, and the warnings synth printed (its `warning: <file>: <message>` lines, per input). Exit 1 when a
convention fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

DEFAULT_SUBJECT = Path("/work/shared/data/coregistered/brats18-tcia02-370")
PROJECT = Path(__file__).resolve().parents[1]
INPUTS = ("t1", "t1c", "t2")
TOLERANCE = 0.02
SATURATED = 20


def mrimpute_command() -> list[str]:
    """This environment's `mrimpute` console script, run at the lowest priority."""
    script = Path(sys.executable).with_name("mrimpute")
    return ["nice", "-n", "19", str(script)]


def convert(image: nib.Nifti1Image, convention: str, seed: int) -> nib.Nifti1Image:
    """The image under one intensity convention (same grid and affine)."""
    data = np.asanyarray(image.dataobj).astype(np.float64)
    brain = data > 0
    header = image.header.copy()
    if convention == "z-scored":
        inside = data[brain]
        out = np.where(brain, (data - inside.mean()) / inside.std(), -5.0).astype(np.float32)
        header.set_data_dtype(np.float32)
        return nib.Nifti1Image(out, image.affine, header)
    if convention == "min-max":
        header.set_data_dtype(np.float32)
        return nib.Nifti1Image((data / data.max()).astype(np.float32), image.affine, header)
    if convention == "int16 slope 0.5":
        header.set_data_dtype(np.int16)
        out = nib.Nifti1Image(np.round(data / 0.5).astype(np.int16), image.affine, header)
        out.header.set_slope_inter(0.5, 0.0)
        return out
    if convention == f"{SATURATED} saturated":
        rng = np.random.default_rng(seed)
        flat = np.flatnonzero(brain)
        out = data.copy().ravel()
        out[rng.choice(flat, SATURATED, replace=False)] = 32767
        header.set_data_dtype(np.int16)
        return nib.Nifti1Image(out.reshape(data.shape).astype(np.int16), image.affine, header)
    raise ValueError(convention)


CONVENTIONS = ("original", "z-scored", "min-max", "int16 slope 0.5", f"{SATURATED} saturated")


def write_inputs(subject: Path, folder: Path, convention: str) -> dict[str, Path]:
    if convention == "original":
        return {m: subject / f"{m}.nii.gz" for m in INPUTS}
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for i, m in enumerate(INPUTS):
        image = nib.load(str(subject / f"{m}.nii.gz"))
        image = nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine, image.header)  # slope applied
        paths[m] = folder / f"{m}.nii.gz"
        nib.save(convert(image, convention, seed=i), str(paths[m]))
    return paths


def run_synth(inputs: dict[str, Path], out: Path, model: Path | None, threads: int,
              extra: list[str] | None = None) -> tuple[int, list[str], str]:
    """Run `mrimpute synth`; its exit code, its warning lines and its stderr."""
    command = mrimpute_command() + ["synth", *[a for m, p in inputs.items() for a in (f"--{m}", str(p))],
                                    "--out", str(out), "--threads", str(threads), "--force", *(extra or [])]
    if model is not None:
        command += ["--model", str(model)]
    env = {**os.environ, "COLUMNS": "400"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    warnings = [line[len("warning: "):] for line in done.stderr.splitlines() if line.startswith("warning: ")]
    return done.returncode, warnings, done.stderr


def score(pred: Path, truth: Path, brain: Path | np.ndarray | None = None) -> dict[str, float]:
    """In-brain SSIM and PSNR (mrimpute.metrics.in_brain_metrics) of pred against truth; the brain: a mask file or
    array on the truth's grid, or the truth's voxels > 0."""
    from mrimpute.io.nifti import load_volume
    from mrimpute.metrics import in_brain_metrics

    true = load_volume(truth).data
    mask = true > 0 if brain is None else (load_volume(brain).data > 0.5 if isinstance(brain, Path) else brain)
    return in_brain_metrics(load_volume(pred).data, true, mask)


def short_warnings(warnings: list[str], inputs: dict[str, Path]) -> str:
    """`t1: looks z-scored ...` per warning: the file as its modality, the message cut before its details."""
    names = {str(p): m for m, p in inputs.items()}
    parts = []
    for warning in warnings:
        path, _, message = warning.partition(": ")
        parts.append(f"{names.get(path, Path(path).name)}: {message.split(' (')[0].split(';')[0]}")
    return "; ".join(parts) or "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subject", type=Path, default=DEFAULT_SUBJECT)
    parser.add_argument("--model", type=Path, default=None, help="model checkpoint (default: the shipped model)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default="", help="comma-separated conventions (default: all)")
    args = parser.parse_args(argv)
    os.nice(max(0, 19 - os.nice(0)))
    chosen = [c for c in CONVENTIONS if not args.only or c in args.only.split(",")]
    if "original" not in chosen:
        chosen.insert(0, "original")
    with tempfile.TemporaryDirectory() as scratch:
        work = args.out or Path(scratch)
        rows, reference = [], None
        for convention in chosen:
            folder = work / convention.replace(" ", "-")
            inputs = write_inputs(args.subject, folder / "inputs", convention)
            out = folder / "flair_synth.nii.gz"
            code, warnings, stderr = run_synth(inputs, out, args.model, args.threads)
            if code != 0:
                rows.append({"convention": convention, "SSIM": "-", "PSNR": "-", "change": "-", "pass": "no",
                             "warnings": f"exit {code}: {stderr.strip().splitlines()[-1] if stderr.strip() else ''}"})
                continue
            scores = score(out, args.subject / "flair.nii.gz")
            reference = scores["ssim"] if convention == "original" else reference
            change = scores["ssim"] - reference if reference is not None else float("nan")
            rows.append({"convention": convention, "SSIM": f"{scores['ssim']:.4f}", "PSNR": f"{scores['psnr']:.2f}",
                         "change": f"{change:+.4f}", "pass": "yes" if abs(change) <= TOLERANCE else "no",
                         "warnings": short_warnings(warnings, inputs)})
    print(f"subject {args.subject.name}, FLAIR from T1+T1c+T2, model {args.model or 'shipped default'}; in-brain "
          f"(real FLAIR > 0) SSIM/PSNR; pass: |SSIM change| <= {TOLERANCE}\n")
    print("| convention | SSIM | PSNR | change vs original | pass (<= 0.02) | warnings printed |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")
    return 0 if all(row["pass"] == "yes" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
