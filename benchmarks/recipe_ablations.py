"""The training recipe's ablations: each switch of `mrimpute train` against the paper's recipe at one fixed budget.

    .venv/bin/python benchmarks/recipe_ablations.py --data ../shared/data/coregistered --out runs/recipe
        [--split models/split.toml] [--variants intensity,spatial,...] [--subsets single+rest]
        [--width 0.25] [--crop 64] [--batch-size 8] [--epochs 10] [--steps 30] [--seed 0] [--threads 1] [--dry-run]

Every model is trained by `mrimpute train --split` (the declared split: test subjects never read, validation
subjects pick the best epoch) with the same seed, width, crop, batch and number of steps; `base` is the paper's
recipe (constant learning rate, no augmentation, every input fused in c3, MAE). Each variant adds one switch (or,
for `crop-*` and `width-*`, changes one size; `recipe` is every switch the shipped run uses). Each model is scored
by `mrimpute eval --split --part validation` (model selection happens on validation subjects, never on the test
ones), and all of them are one `mrimpute eval --compare` table against `base`, with its significance marks
(`*`: p < 0.05 in both a paired t-test and a Wilcoxon test).

Resumable like benchmarks/ablations.py (whose runner it uses): existing checkpoints and metrics are kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablations import Runner, add_budget_options  # noqa: E402  (the shared runner and options)

BASE = "base"


def variants(steps_total: int) -> dict[str, list[str]]:
    """name -> extra `mrimpute train` options (schedule lengths follow the budget)."""
    warmup = str(max(1, steps_total // 20))
    ema = f"{1 - 10 / steps_total:.4f}"  # an averaging horizon of a tenth of the run
    return {
        "intensity": ["--augment", "intensity"],
        "spatial": ["--augment", "spatial"],
        "dropout": ["--input-dropout"],
        "ssim": ["--ssim", "0.5"],
        "cosine": ["--lr-schedule", "cosine", "--warmup-steps", warmup],
        "ema": ["--ema", ema],
        "recipe": ["--augment", "intensity,spatial", "--input-dropout", "--ssim", "0.5", "--lr-schedule", "cosine",
                   "--warmup-steps", warmup, "--ema", ema],
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--split", type=Path, default=Path(__file__).resolve().parents[1] / "models" / "split.toml")
    parser.add_argument("--variants", default="", help="comma-separated (default: all, plus crop/width sizes)")
    parser.add_argument("--sizes", default="crop-96,width-0.375", help="size variants: crop-N, width-W")
    parser.add_argument("--subsets", default="single+rest")
    add_budget_options(parser, threads=1)
    return parser.parse_args(argv)


def _size_variant(name: str) -> dict[str, str]:
    kind, _, value = name.partition("-")
    if kind not in ("crop", "width") or not value:
        raise SystemExit(f"unknown size variant '{name}' (expected crop-N or width-W)")
    return {f"--{kind}": value}


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    run = Runner(args.out, args.dry_run)
    models, evals = args.out / "models", args.out / "eval"
    if not args.dry_run:
        models.mkdir(parents=True, exist_ok=True)
    chosen = variants(args.epochs * args.steps)
    if args.variants:
        unknown = set(args.variants.split(",")) - set(chosen)
        if unknown:
            raise SystemExit(f"unknown variant(s): {', '.join(sorted(unknown))} (known: {', '.join(chosen)})")
        chosen = {k: v for k, v in chosen.items() if k in args.variants.split(",")}
    sizes = {name: _size_variant(name) for name in args.sizes.split(",") if name}
    common = {"--data": str(args.data), "--split": str(args.split), "--width": str(args.width),
              "--crop": str(args.crop), "--batch-size": str(args.batch_size), "--epochs": str(args.epochs),
              "--steps-per-epoch": str(args.steps), "--patience": str(args.epochs), "--seed": str(args.seed),
              "--threads": str(args.threads), "--device": "cpu"}

    def trained_and_scored(name: str, flags: list[str], sizes: dict[str, str] | None = None) -> Path:
        options = {**common, **(sizes or {})}
        checkpoint = models / f"{name}.pt"
        run("train", *[x for kv in options.items() for x in kv], *flags, "--out", str(checkpoint),
            done_when=checkpoint, resumable=True)
        folder = evals / name
        run("eval", "--model", str(checkpoint), "--data", str(args.data), "--split", str(args.split), "--part",
            "validation", "--subsets", args.subsets, "--no-qc", "--threads", str(args.threads), "--device", "cpu",
            "--out-dir", str(folder), done_when=folder / "metrics.csv")
        return folder

    folders = [trained_and_scored(BASE, [])] + [trained_and_scored(n, flags) for n, flags in chosen.items()] + \
        [trained_and_scored(n, [], size) for n, size in sizes.items()]
    out = args.out / "compare"
    run("eval", *[a for f in folders for a in ("--compare", str(f))], "--out-dir", str(out),
        done_when=out / "comparison.csv")


if __name__ == "__main__":
    main()
