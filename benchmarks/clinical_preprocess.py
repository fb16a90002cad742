"""`mrimpute preprocess` on a clinical session: raw clinical01 (thick slices, each series on its own grid, heads)
onto one grid, timed.

    .venv/bin/python benchmarks/clinical_preprocess.py [--data ../shared/data/raw/clinical01] [--out DIR]
        [--ref t1] [--dwi-image trace] [--threads 1] [--no-skull-strip]

Runs the shipped command, as a user would:

    mrimpute preprocess --ref t1=<t1 pre> --t1c <t1 post> --t2 <t2> --flair <flair> --dwi <trace> --adc <adc>
        --out-dir DIR --inplane 1 --skull-strip --threads 1

Reference: the pre-contrast T1 (t1_se_fs_series901), by default. Why T1 rather than the T2: it is the scan deepbet
extracts the brain from (--skull-strip), so the brain mask comes from the reference itself, never through a
registration; it shares its grid (0.9 x 0.9 x 6 mm) with the FLAIR, the usual synthesis target, and with the
post-contrast T1's protocol; the T2's finer in-plane voxels (0.45 mm) would only be averaged away on the 1 mm
target grid. `--ref t2` runs the other choice.

The DWI input is the trace image (`--dwi-image b0` uses the b=0 image instead); the ADC map lies on the same grid
(checked here: shape and affine), so `preprocess` registers it through the DWI's transform (`registers_via` in the
modality table). The b=0 image is not a modality of the table: only one diffusion image goes in.

Prints one markdown table per series (file, metric, head overlap and how it is measured, the start kept, seconds
to register) and one of the steps' seconds, from the manifest, and the command's wall time. The issue's target:
the whole session in under 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

SERIES = {"t1": "t1_se_fs_series901", "t1c": "t1_se_fs_series1201", "t2": "t2_tse_series401",
          "flair": "flair_series701", "trace": "dwi_trace_series304", "b0": "dwi_b0_series301", "adc": "adc_series303"}
TARGET_SECONDS = 180.0


def shared_data() -> Path:
    """../shared/data beside the project (or $MRIMPUTE_SHARED_DATA, or the first shared/data above it)."""
    if os.environ.get("MRIMPUTE_SHARED_DATA"):
        return Path(os.environ["MRIMPUTE_SHARED_DATA"])
    for folder in Path(__file__).resolve().parents:
        if (folder / "shared" / "data").is_dir():
            return folder / "shared" / "data"
    return Path("/work/shared/data")


def series_files(data: Path, ref: str, dwi_image: str) -> dict[str, Path]:
    """modality -> raw file, reference first."""
    files = {name: data / f"{SERIES[key]}.nii.gz" for name, key in
             (("t1", "t1"), ("t1c", "t1c"), ("t2", "t2"), ("flair", "flair"), ("dwi", dwi_image), ("adc", "adc"))}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        sys.exit(f"error: {missing[0]}: file not found (is --data the clinical01 folder?)")
    return {ref: files[ref], **{k: v for k, v in files.items() if k != ref}}


def same_grid(a: Path, b: Path) -> bool:
    x, y = nib.load(a), nib.load(b)
    return x.shape == y.shape and np.allclose(x.affine, y.affine, atol=1e-3)


def command(files: dict[str, Path], ref: str, out: Path, threads: int, skull_strip: bool) -> list[str]:
    mrimpute = Path(sys.executable).with_name("mrimpute")
    args = [str(mrimpute), "preprocess", "--ref", f"{ref}={files[ref]}", "--out-dir", str(out), "--inplane", "1",
            "--threads", str(threads), "--force"]
    for name, path in files.items():
        if name != ref:
            args += [f"--{name}", str(path)]
    return args + (["--skull-strip"] if skull_strip else [])


def markdown(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return "\n".join(lines + ["| " + " | ".join(str(row[k]) for k in keys) + " |" for row in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=shared_data() / "raw" / "clinical01")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a temporary one)")
    parser.add_argument("--ref", choices=("t1", "t2"), default="t1")
    parser.add_argument("--dwi-image", choices=("trace", "b0"), default="trace")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-skull-strip", action="store_true")
    args = parser.parse_args()
    files = series_files(args.data, args.ref, args.dwi_image)
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch) / "clinical01"
        run = command(files, args.ref, out, args.threads, not args.no_skull_strip)
        print("$ " + " ".join(run).replace(str(args.data) + "/", ""), flush=True)
        started = time.perf_counter()
        done = subprocess.run(run, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-2000:] + done.stderr[-2000:])
            return 1
        manifest = json.loads((out / "manifest.json").read_text())
    registration, seconds = manifest["registration"], manifest["seconds"]
    rows = [{"series": files[args.ref].name, "modality": args.ref, "metric": "reference", "overlap": "-",
             "measure": "-", "init": "-", "register s": "-"}]
    rows += [{"series": files[name].name, "modality": name, "metric": f"{row['metric']:.3f}",
              "overlap": f"{row['overlap']:.3f}", "measure": row.get("overlap_measure", "Dice"),
              "init": row["init"], "register s": f"{seconds.get(f'register:{name}', 0.0):.1f}"}
             for name, row in registration.items()]
    print(f"\n### clinical01 onto {args.ref} ({files[args.ref].name}), --inplane 1"
          f"{'' if args.no_skull_strip else ' --skull-strip'}, --threads {args.threads}\n")
    print(markdown(rows))
    print("\n" + markdown([{"step": k, "seconds": f"{v:.1f}"} for k, v in seconds.items()]
                          + [{"step": "wall (the command, start to end)", "seconds": f"{wall:.1f}"}]))
    grid = manifest["grid"]
    print(f"\ngrid: {grid['shape']} voxels of {grid['voxel_mm']} mm; mask: {manifest['mask']['method'][:60]}...")
    print(f"ADC on the DWI's grid: {same_grid(files['dwi'], files['adc'])} "
          f"(ADC registered {registration['adc']['init']})")
    verdict = "within" if wall < TARGET_SECONDS else "OVER"
    print(f"whole session: {wall:.1f} s, {verdict} the {TARGET_SECONDS:.0f} s target")
    return 0 if wall < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
