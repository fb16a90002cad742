"""The paper's ablations and the new-decoder experiment, as the mrimpute commands that produce them.

    .venv/bin/python benchmarks/ablations.py --data ../shared/data/coregistered --out runs/ablations
        [--test ms07] [--val gli00001] [--experiments costs,fusions,latent,decoder] [--subsets all]
        [--width 0.25] [--crop 64] [--batch-size 8] [--epochs 10] [--steps 30] [--seed 0] [--threads 0] [--dry-run]

Every model is trained by `mrimpute train` (or `train-decoder`) with the same data split, seed, width, crop, batch
and number of steps, differing only in what the experiment varies; each is scored by `mrimpute eval` on the held-out
test subject(s) over every input subset; each experiment is one `mrimpute eval --compare` table against the
baseline model (max fusion, all three cost terms, 16 latent channels), with the compare command's significance
marks (`*`: p < 0.05 in both a paired t-test and a Wilcoxon test, pooled over subsets and subjects).

- costs (paper Table V): the baseline without c1, without c2, without c3.
- fusions (paper VI-F): max (baseline), mean, HeMIS mean+variance, output-mean, and mean-max, the paper's suggested
  interpolation between mean and max with the mix learned per latent channel.
- latent (paper Table I): 4 and 8 latent channels against 16.
- decoder (paper VI-E): a model trained without a T1c output, then `mrimpute train-decoder --output t1c` with every
  encoder frozen ("isolated"), against the baseline, which learnt T1c jointly; scored on T1c only.

The script is resumable: a model whose checkpoint exists is not retrained, an evaluation whose metrics.csv exists
is not rerun (delete them to redo). Every command is printed before it runs; `--dry-run` prints them only.
`<out>/ablations.json` records each command, its seconds and its exit status; the tables are in
`<out>/compare/<experiment>/comparison.csv`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

BASE = "base"
# experiment -> the models it compares with the baseline: name -> extra `mrimpute train` options
EXPERIMENTS: dict[str, dict[str, list[str]]] = {
    "costs": {"no-c1": ["--no-c1"], "no-c2": ["--no-c2"], "no-c3": ["--no-c3"]},
    "fusions": {f"fusion-{f}": ["--fusion", f] for f in ("mean", "hemis", "output-mean", "mean-max")},
    "latent": {"latent-4": ["--latent", "4"], "latent-8": ["--latent", "8"]},
    "decoder": {},  # built below: the parent without t1c and its train-decoder extension
}
NEW_OUTPUT = "t1c"
PARENT = "no-t1c"
ISOLATED = "t1c-isolated"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--test", default="ms07", help="held-out subject(s) to score, comma-separated")
    parser.add_argument("--val", default="gli00001", help="validation subject(s) (best epoch)")
    parser.add_argument("--experiments", default="costs,fusions,latent,decoder")
    parser.add_argument("--subsets", default="all", help="input subsets scored by eval (all, single+rest ...)")
    add_budget_options(parser, threads=0)
    args = parser.parse_args(argv)
    unknown = set(args.experiments.split(",")) - set(EXPERIMENTS)
    if unknown:
        parser.error(f"unknown experiment(s): {', '.join(sorted(unknown))} (known: {', '.join(EXPERIMENTS)})")
    return args


def add_budget_options(parser: argparse.ArgumentParser, threads: int) -> None:
    """The options every model of an ablation shares: its size, steps, seed and threads, and --dry-run."""
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30, help="steps per epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=threads)
    parser.add_argument("--dry-run", action="store_true")


class Runner:
    """Runs (or prints) mrimpute commands and keeps a log of each."""

    def __init__(self, out: Path, dry_run: bool) -> None:
        self.out, self.dry_run, self.log = out, dry_run, []

    def __call__(self, *args: str, done_when: Path, resumable: bool = False) -> None:
        """Run one command unless `done_when` exists. A resumable (training) command whose checkpoint exists but
        which this log does not record as finished was interrupted (its best checkpoint is written every improving
        epoch): it is run again with --resume, which continues it, or only closes it when its epochs are done."""
        shown = "mrimpute " + shlex.join(args)
        if done_when.exists() and (not resumable or self.finished(shown)):
            print(f"# done already ({done_when}): {shown}", flush=True)
            return
        interrupted = done_when.exists()
        if interrupted:
            args = (*args, "--resume")
        command = [sys.executable, "-m", "mrimpute", *args]
        print(f"{shown} --resume  # interrupted before: continued" if interrupted else shown, flush=True)
        if self.dry_run:
            return
        start = time.perf_counter()
        status = subprocess.run(command).returncode
        self.log.append({"command": shown, "seconds": round(time.perf_counter() - start, 1), "exit": status})
        self.save()
        if status != 0:
            sys.exit(f"failed ({status}): {shown}")

    def finished(self, shown: str) -> bool:
        """Whether the log records this command as run to its end (exit status 0), now or in an earlier run."""
        path = self.out / "ablations.json"
        earlier = json.loads(path.read_text()) if path.exists() else []
        return any(e["command"] == shown and e["exit"] == 0 for e in earlier + self.log)

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "ablations.json"
        earlier = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps(earlier + self.log[-1:], indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    run = Runner(args.out, args.dry_run)
    models, evals = args.out / "models", args.out / "eval"
    if not args.dry_run:
        models.mkdir(parents=True, exist_ok=True)
    common = ["--data", str(args.data), "--exclude", args.test, "--val-subjects", args.val, "--width", str(args.width),
              "--crop", str(args.crop), "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
              "--steps-per-epoch", str(args.steps), "--patience", str(args.epochs), "--seed", str(args.seed),
              "--threads", str(args.threads)]
    modalities = "t1,t1c,t2,flair"

    def train(name: str, extra: list[str]) -> Path:
        checkpoint = models / f"{name}.pt"
        run("train", *common, "--inputs", modalities, "--outputs", modalities, *extra, "--out", str(checkpoint),
            done_when=checkpoint, resumable=True)
        return checkpoint

    def evaluate(name: str, checkpoint: Path, targets: str | None = None) -> Path:
        folder = evals / name
        run("eval", "--model", str(checkpoint), "--data", str(args.data), "--subjects", args.test,
            "--subsets", args.subsets,
            *(["--targets", targets] if targets else []), "--no-qc", "--out-dir", str(folder),
            done_when=folder / "metrics.csv")
        return folder

    def compare(experiment: str, folders: list[Path]) -> None:
        out = args.out / "compare" / experiment
        run("eval", *[a for f in folders for a in ("--compare", str(f))], "--out-dir", str(out),
            done_when=out / "comparison.csv")

    base = evaluate(BASE, train(BASE, []))
    for experiment in args.experiments.split(","):
        if experiment == "decoder":
            parent = models / f"{PARENT}.pt"
            run("train", *common, "--inputs", modalities, "--outputs", "t1,t2,flair", "--out", str(parent),
                done_when=parent, resumable=True)
            isolated = models / f"{ISOLATED}.pt"
            run("train-decoder", "--model", str(parent), "--output", NEW_OUTPUT, *_without(common, ("--width",)),
                "--out", str(isolated), done_when=isolated, resumable=True)
            joint = evaluate(f"{BASE}-{NEW_OUTPUT}", models / f"{BASE}.pt", NEW_OUTPUT)
            compare(experiment, [joint, evaluate(ISOLATED, isolated, NEW_OUTPUT)])
            continue
        folders = [evaluate(name, train(name, extra)) for name, extra in EXPERIMENTS[experiment].items()]
        compare(experiment, [base, *folders])


def _without(options: list[str], names: tuple[str, ...]) -> list[str]:
    """options with each named option and its value removed."""
    kept, skip = [], False
    for item in options:
        if skip:
            skip = False
        elif item in names:
            skip = True
        else:
            kept.append(item)
    return kept


if __name__ == "__main__":
    main()
