"""End-to-end clinical benchmark (issue 16): raw sessions -> `mrimpute preprocess` -> FLAIR synthesised by the
model and by the REPLICA-style forest -> scored against the acquired FLAIR, on its native grid and on the
preprocessed grid.

    nice -n 19 .venv/bin/python benchmarks/clinical_benchmark.py [--out runs/clinical-bench] [--threads 1]
        [--model models/default.pt] [--diffusion-model models/diffusion.pt] [--results benchmarks/results/clinical]
        [--encoder-minutes 40] [--force]

Subjects (../shared/data; development and testing only): raw/clinical01 (a glioma patient's Philips session: T1 before
and after contrast, T2, FLAIR, DWI trace, ADC; 6 mm slices, heads) and stroke/isles22-0009 (DWI, ADC, an expert stroke
lesion on a 2 mm grid; FLAIR on its own 0.45 x 0.45 x 5 mm grid).

1. `mrimpute preprocess`: clinical01 onto its T1 (`--inplane 1 --skull-strip`, as benchmarks/clinical_preprocess.py);
   isles22-0009 onto its FLAIR (`--inplane 1`, brain mask = the DWI's own foreground: no T1 for deepbet; as
   benchmarks/diffusion_encoders.sh).
2. Rows: clinical01 FLAIR from (a) T1+T2, (b) T1+T2+DWI, (c) DWI, (d) T1; isles22-0009 FLAIR from (e) DWI+ADC,
   (f) DWI, (g) ADC. Model: `mrimpute synth --target flair` on the preprocessed inputs, written on the preprocessed
   grid and with `--native-ref flair` on the FLAIR's native grid. Forest: the REPLICA-style forest of
   `eval --baseline replica` (pipeline/baseline.py), written on the preprocessed grid and taken to the FLAIR's native
   grid by the same resampling as `synth --native-ref` (pipeline/native.py).
3. Cross-fitting (only two subjects have diffusion): the shipped diffusion model's dwi/adc encoders learnt on
   clinical01, so clinical01's diffusion rows use encoders trained here (`mrimpute train-encoder`, everything else
   frozen, from --model) on isles22-0009 only, written under --out and never shipped; isles22-0009's rows use the
   shipped diffusion model. Rows without diffusion use --model. The forest without diffusion learns from the
   training subjects of models/split.toml (coregistered); with diffusion, from the other diffusion subject, or is
   `n/a` when that subject lacks an input.
4. `mrimpute eval --pred --truth --mask [--lesion]`: in-brain SSIM/PSNR (brain protocol) against the acquired FLAIR
   (its brain: deepbet's mask on clinical01, the DWI foreground on isles22-0009; on the native grid the FLAIR is
   zeroed outside that mask, as on the preprocessed grid), and inside the stroke lesion. Reference rows score an
   input as it is, as if it were the FLAIR.

Writes --out/clinical_benchmark.{md,csv,json} after each phase (unfinished rows read `pending`) and copies them to
--results at the end. Finished steps are skipped on a rerun (markers in --out/done/; --force redoes everything).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return sys.modules[name]


clinical_preprocess = _load("clinical_preprocess")
plan = _load("clinical_bench_plan")
AS_IS, CLINICAL, ISLES, ROWS, TARGET, Row = plan.AS_IS, plan.CLINICAL, plan.ISLES, plan.ROWS, plan.TARGET, plan.Row
forest_for, model_for, table_row, write_tables = plan.forest_for, plan.model_for, plan.table_row, plan.write_tables
MRIMPUTE = str(Path(sys.executable).with_name("mrimpute"))


class Bench:
    """The benchmark's folder, options and step bookkeeping."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.out, self.threads = args, args.out, str(args.threads)
        self.data, self.shared = args.out / "data", args.shared
        self.crossfit = args.out / "models" / "isles22-diffusion.pt"
        self.failed: list[str] = []

    def step(self, name: str, work) -> bool:
        """Run `work()` unless done before; a failing step is reported and the benchmark goes on."""
        marker = self.out / "done" / name
        if marker.exists() and not self.args.force:
            return True
        started = time.perf_counter()
        print(f"\n## {name}", flush=True)
        try:
            work()
        except (subprocess.CalledProcessError, OSError, ValueError, RuntimeError) as exc:
            print(f"FAILED {name}: {exc}", flush=True)
            self.failed.append(name)
            return False
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{time.perf_counter() - started:.1f} s\n")
        print(f"done {name} in {time.perf_counter() - started:.1f} s", flush=True)
        return True

    def run(self, *args: str) -> None:
        command = [MRIMPUTE, *args]
        print("$ mrimpute " + " ".join(args), flush=True)
        subprocess.run(command, check=True)


def preprocess(bench: Bench) -> None:
    """Both sessions onto one grid each (clinical01: T1 reference; isles22-0009: FLAIR reference, DWI mask)."""
    raw = bench.shared / "raw" / "clinical01"
    files = clinical_preprocess.series_files(raw, "t1", "trace")
    command = clinical_preprocess.command(files, "t1", bench.data / CLINICAL, bench.args.threads, True)
    bench.step("preprocess-clinical01", lambda: bench.run(*command[1:]))
    stroke = bench.shared / "stroke" / ISLES
    foreground = bench.out / "prep" / f"{ISLES}-foreground"
    bench.step("preprocess-isles-foreground", lambda: bench.run(
        "preprocess", "--ref", f"dwi={stroke / 'dwi.nii.gz'}", "--inplane", "1", "--threads", bench.threads,
        "--force", "--out-dir", str(foreground)))
    bench.step("preprocess-isles", lambda: bench.run(
        "preprocess", "--ref", f"flair={stroke / 'flair_native.nii.gz'}", "--dwi", str(stroke / "dwi.nii.gz"),
        "--adc", str(stroke / "adc.nii.gz"), "--inplane", "1", "--skull-strip", "--mask",
        str(foreground / "brainmask.nii.gz"), "--threads", bench.threads, "--force", "--out-dir",
        str(bench.data / ISLES)))


def masks(bench: Bench) -> None:
    """The brain mask and the brain-masked FLAIR on the FLAIR's native grid; the lesion on both grids."""
    import numpy as np
    import SimpleITK as sitk

    from mrimpute.io.nifti import canonical_affine, load_volume, save_like
    from mrimpute.preprocess import spatial
    from mrimpute.runtime.native import to_native

    folder = bench.out / "masks"
    folder.mkdir(parents=True, exist_ok=True)
    for subject in (CLINICAL, ISLES):
        manifest = bench.data / subject / "manifest.json"
        native = to_native(bench.data / subject / "brainmask.nii.gz", manifest, TARGET,
                           folder / f"{subject}_brainmask_native.nii.gz", force=True)
        brain = load_volume(native).data > 0.5
        flair = load_volume(json.loads(manifest.read_text())["inputs"][TARGET]["path"])
        save_like(flair.data * brain, flair, folder / f"{subject}_flair_native_brain.nii.gz", force=True)
    manifest = json.loads((bench.data / ISLES / "manifest.json").read_text())
    transform = bench.data / ISLES / manifest["transforms"]["dwi"]["path"]
    lesion = load_volume(bench.shared / "stroke" / ISLES / "lesion.nii.gz")
    moving = spatial.image_from_array(lesion.data, canonical_affine(lesion))
    for grid_path, name in ((bench.data / ISLES / "flair.nii.gz", "grid"),
                            (folder / f"{ISLES}_flair_native_brain.nii.gz", "native")):
        grid = load_volume(grid_path)
        fixed = spatial.image_from_array(grid.data, canonical_affine(grid))
        moved = spatial.resample(moving, fixed, sitk.ReadTransform(str(transform)), nearest=True)
        save_like((spatial.array_from_image(moved) > 0.5).astype(np.uint8), grid,
                  folder / f"{ISLES}_lesion_{name}.nii.gz", force=True, dtype=np.uint8)


def _inputs(bench: Bench, row: Row) -> dict[str, Path]:
    return {m: bench.data / row.subject / f"{m}.nii.gz" for m in row.inputs}


def _pred(bench: Bench, row: Row, method: str, grid: str) -> Path:
    return bench.out / "pred" / row.subject / f"{row.key}_{method}_{grid}.nii.gz"


def synth_model(bench: Bench, row: Row) -> None:
    """The model's FLAIR on the preprocessed grid and on the FLAIR's native grid."""
    choice = model_for(row, bench.args.model, bench.args.diffusion_model, bench.crossfit)
    args = [a for m, p in _inputs(bench, row).items() for a in (f"--{m}", str(p))]
    common = ["--target", TARGET, "--model", str(choice.path), "--threads", bench.threads, "--device", "cpu",
              "--force"]
    _pred(bench, row, "model", "grid").parent.mkdir(parents=True, exist_ok=True)
    bench.run("synth", *args, *common, "--out", str(_pred(bench, row, "model", "grid")))
    bench.run("synth", *args, *common, "--native-ref", TARGET, "--out", str(_pred(bench, row, "model", "native")))


def _split_training(bench: Bench) -> tuple[str, ...]:
    from mrimpute.data.split import load_split
    from mrimpute.data.subjects import discover_subjects

    split = load_split(ROOT / "models" / "split.toml")
    held = set(split.test) | set(split.validation)
    return tuple(s.name for s in discover_subjects(bench.args.coregistered) if s.name not in held)


def _has(bench: Bench) -> dict[str, set[str]]:
    from mrimpute.data.subjects import discover_subjects

    return {s.name: set(s.files) for s in discover_subjects(bench.data)}


def _forest_choice(bench: Bench, row: Row):
    return forest_for(row, _split_training(bench), bench.args.coregistered, bench.data,
                      _has(bench) if bench.data.is_dir() else {})


def forest(bench: Bench, row: Row) -> None:
    """The forest's FLAIR on the preprocessed grid, then on the FLAIR's native grid; what it learnt from, noted."""
    from mrimpute.pipeline.baseline import forest_synthesis
    from mrimpute.runtime.native import to_native

    choice = _forest_choice(bench, row)
    out = _pred(bench, row, "forest", "grid")
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"forest for {row.subject} {row.key}: trained on {', '.join(choice.subjects)}", flush=True)
    _, used = forest_synthesis(choice.data, list(choice.subjects), _inputs(bench, row), TARGET, out,
                               n_jobs=bench.args.threads, force=True)
    to_native(out, bench.data / row.subject / "manifest.json", TARGET, _pred(bench, row, "forest", "native"),
              force=True)
    out.with_suffix("").with_suffix(".json").write_text(json.dumps({"trained_on": used}) + "\n")


def as_is(bench: Bench, row: Row) -> None:
    """An input unchanged, on the preprocessed grid and taken to the FLAIR's native grid."""
    from mrimpute.runtime.native import to_native

    source = _inputs(bench, row)[row.inputs[0]]
    _pred(bench, row, "asis", "grid").parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, _pred(bench, row, "asis", "grid"))
    to_native(source, bench.data / row.subject / "manifest.json", TARGET, _pred(bench, row, "asis", "native"),
              force=True)


def score(bench: Bench, row: Row, method: str) -> None:
    """`mrimpute eval --pred --truth --mask [--lesion]` on both grids."""
    masks_dir = bench.out / "masks"
    truths = {"grid": (bench.data / row.subject / "flair.nii.gz", bench.data / row.subject / "brainmask.nii.gz"),
              "native": (masks_dir / f"{row.subject}_flair_native_brain.nii.gz",
                         masks_dir / f"{row.subject}_brainmask_native.nii.gz")}
    for grid, (truth, mask) in truths.items():
        lesion = masks_dir / f"{row.subject}_lesion_{grid}.nii.gz"
        bench.run("eval", "--pred", str(_pred(bench, row, method, grid)), "--truth", str(truth), "--mask", str(mask),
                  *(["--lesion", str(lesion)] if row.subject == ISLES else []), "--out-dir",
                  str(_scores(bench, row, method, grid)), "--force")


def _scores(bench: Bench, row: Row, method: str, grid: str) -> Path:
    return bench.out / "scores" / row.subject / f"{row.key}_{method}_{grid}"


def train_crossfit(bench: Bench) -> None:
    """dwi then adc encoders into --model's latent space, trained on isles22-0009 alone (clinical01 excluded)."""
    dwi = bench.out / "models" / "isles22-dwi.pt"
    common = ["--data", str(bench.data), "--subjects", ISLES, "--exclude", CLINICAL, "--steps-per-epoch", "25",
              "--threads", bench.threads, "--device", "cpu", "--seed", "0", "--force",
              "--time-limit", str(bench.args.encoder_minutes)]
    bench.run("train-encoder", "--model", str(bench.args.model), "--input", "dwi", "--out", str(dwi),
              "--epochs", "24", "--patience", "24", *common)
    bench.run("train-encoder", "--model", str(dwi), "--input", "adc", "--out", str(bench.crossfit),
              "--epochs", "16", "--patience", "16", *common)


def _read_scores(bench: Bench, row: Row, method: str, grid: str) -> dict | None:
    path = _scores(bench, row, method, grid) / "pair_metrics.json"
    return json.loads(path.read_text())["scores"] if path.is_file() else None


def _trained_on(model: Path) -> str:
    """The training subjects a checkpoint records."""
    from mrimpute.io.checkpoint import load_checkpoint

    try:
        return ", ".join(load_checkpoint(model)["metadata"].get("training_subjects", [])) or "?"
    except Exception as exc:  # noqa: BLE001 - a table note, never a reason to stop
        return f"? ({exc})"


def tables(bench: Bench) -> list[Path]:
    """The table from every score written so far."""
    args, lines = bench.args, []
    for row in ROWS:
        model = model_for(row, args.model, args.diffusion_model, bench.crossfit)
        note = model.note if row.diffusion else f"{model.note} (trained on {_trained_on(model.path)})"
        lines.append(table_row(row, "model", note, _read_scores(bench, row, "model", "native"),
                               _read_scores(bench, row, "model", "grid")))
        chosen = _forest_choice(bench, row)
        note = chosen.note if chosen.path is None else f"forest on {chosen.note}"
        lines.append(table_row(row, "forest", note, _read_scores(bench, row, "forest", "native"),
                               _read_scores(bench, row, "forest", "grid"), na=chosen.path is None))
    for row in AS_IS:
        lines.append(table_row(row, "input as is", f"the {row.inputs[0].upper()} itself, scored as the FLAIR",
                               _read_scores(bench, row, "asis", "native"), _read_scores(bench, row, "asis", "grid")))
    header = (f"# Clinical benchmark: FLAIR synthesis, model vs REPLICA-style forest\n\n"
              f"`{' '.join(sys.argv)}` (threads {args.threads}). In-brain SSIM/PSNR (brain protocol) against the "
              "acquired FLAIR on its native grid and on the preprocessed grid (1 mm in-plane, the reference's "
              "slices); lesion: inside isles22-0009's expert stroke lesion, native grid.")
    return write_tables(lines, header, bench.out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "clinical-bench")
    parser.add_argument("--shared", type=Path, default=clinical_preprocess.shared_data())
    parser.add_argument("--coregistered", type=Path, default=None, help="default: <shared>/coregistered")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "default.pt")
    parser.add_argument("--diffusion-model", type=Path, default=ROOT / "models" / "diffusion.pt")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--encoder-minutes", type=float, default=40.0, help="--time-limit of each cross-fit encoder")
    parser.add_argument("--results", type=Path, default=None, help="also copy the tables here at the end")
    parser.add_argument("--force", action="store_true", help="redo finished steps")
    args = parser.parse_args(argv)
    args.coregistered = args.coregistered or args.shared / "coregistered"
    bench = Bench(args)
    preprocess(bench)
    bench.step("masks", lambda: masks(bench))
    early = [r for r in ROWS if not (r.diffusion and r.subject == CLINICAL)]
    phases = [[(f"model-{r.subject}-{r.key}", r, "model") for r in early]
              + [(f"asis-{r.subject}-{r.key}", r, "asis") for r in AS_IS],
              [(f"forest-{r.subject}-{r.key}", r, "forest") for r in ROWS if r.diffusion],
              [(f"model-{r.subject}-{r.key}", r, "model") for r in ROWS if r not in early],
              [(f"forest-{r.subject}-{r.key}", r, "forest") for r in ROWS if not r.diffusion]]
    work = {"model": synth_model, "asis": as_is, "forest": forest}
    for index, phase in enumerate(phases):
        if index == 2:
            bench.step("train-crossfit-encoders", lambda: train_crossfit(bench))
        for name, row, method in phase:
            if method == "forest" and _forest_choice(bench, row).path is None:
                print(f"\n## {name}: {_forest_choice(bench, row).note}", flush=True)
                continue
            if bench.step(name, lambda row=row, method=method: work[method](bench, row)):
                bench.step(f"score-{name}", lambda row=row, method=method: score(bench, row, method))
        written = tables(bench)
        print("\n" + written[0].read_text(), flush=True)
    if args.results:
        args.results.mkdir(parents=True, exist_ok=True)
        for path in written:
            shutil.copyfile(path, args.results / path.name)
    print(f"failed steps: {', '.join(bench.failed)}" if bench.failed else "every step done", flush=True)
    return 1 if bench.failed else 0


if __name__ == "__main__":
    sys.exit(main())
