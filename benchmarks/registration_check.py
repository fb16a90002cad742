"""Acceptance check of `mrimpute preprocess` registration against a dataset's own reference transforms.

    .venv/bin/python benchmarks/registration_check.py [--data /work/shared/data/raw] [--subjects mslong01,mslong04]
        [--draws 3] [--seed 0] [--threads 2] [--points 2000] [--json FILE] [--session]

For each subject, T1W and T2W (study1_*.nii.gz) are registered onto the FLAIR exactly as `mrimpute preprocess`
does (mrimpute.preprocess.spatial.register, rigid, or affine with --affine) and compared with the
dataset's transforms study1_<scan>_intrastudy_to_FLAIR.txt (ITK MatrixOffsetTransformBase read by SimpleITK, so
its centre of rotation is applied as ITK does; ITK convention: they map FIXED = FLAIR physical points, LPS, to
MOVING points, as ours do). Displacement = |T_ours(p) - T_true(p)| in mm over up to --points random voxel centres
of the FLAIR's head mask (lower three-class Otsu, largest component, closing, hole filling). Pass: mean <= 1.0 mm
and max <= 2.5 mm.

How the reference is read: the scans are loaded into the same LPS physical frame as SimpleITK's own NIfTI reader
gives (qform and sform of these files agree within 0.001 mm). For each scan as acquired the JSON rows also give
the mean displacement of our registration from the other possible readings of the .txt (`vs_inverse_mean_mm`,
`vs_ras_mean_mm`, `vs_ras_inverse_mean_mm`), to show which reading the images support. The reference transforms
are affine, not rigid (up to 1.6% scaling): `rigid_floor_*` is the residual of the best rigid fit to them over
the same points, which no rigid registration can beat.

Besides the scan as acquired ("orig"), each moving scan is displaced --draws times by a known random rigid motion
M (rotation up to 15 degrees about its field-of-view centre, translation up to 20 mm; fixed seed) written into its
header (origin and direction; voxels untouched). Tissue that sat at physical point x now sits at M(x), so the
true transform of the displaced scan is p -> M(T_ref(p)). `identity_max` shows that doing nothing fails these
cases (the check would be vacuous otherwise); it is asserted for every displaced case.

Prints a rich table and a JSON summary; exits 1 when a case fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from mrimpute.io.nifti import load_volume
from mrimpute.pipeline.preprocess import PreprocessOptions, preprocess
from mrimpute.pipeline.preprocess_steps import to_sitk
from mrimpute.preprocess import brainmask, spatial

MEAN_MM, MAX_MM = 1.0, 2.5
MAX_DEGREES, MAX_SHIFT_MM = 15.0, 20.0


def random_motion(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """A rotation matrix (random axis, angle up to MAX_DEGREES) and a translation (|t| up to MAX_SHIFT_MM)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(0.5, 1.0) * MAX_DEGREES)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    direction = rng.normal(size=3)
    shift = direction / np.linalg.norm(direction) * rng.uniform(0.5, 1.0) * MAX_SHIFT_MM
    return rotation, shift, [round(float(np.rad2deg(angle)), 2), round(float(np.linalg.norm(shift)), 2)]


def displace(image: sitk.Image, rotation: np.ndarray, shift: np.ndarray) -> tuple[sitk.Image, callable]:
    """The image with motion M(x) = R (x - c) + c + t composed into its header; returns it and M."""
    size = np.array(image.GetSize())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing = np.array(image.GetSpacing())
    origin = np.array(image.GetOrigin())
    centre = origin + direction @ ((size - 1) / 2.0 * spacing)

    def motion(x: np.ndarray) -> np.ndarray:
        return (np.asarray(x) - centre) @ rotation.T + centre + shift

    moved = sitk.Image(image)
    moved.SetDirection([float(v) for v in (rotation @ direction).ravel()])
    moved.SetOrigin([float(v) for v in motion(origin)])
    return moved, motion


def displacement(ours: sitk.Transform, truth: np.ndarray, points: np.ndarray) -> np.ndarray:
    mapped = np.array([ours.TransformPoint(tuple(p)) for p in points])
    return np.linalg.norm(mapped - truth, axis=1)


def other_readings(reference: sitk.Transform) -> dict[str, sitk.Transform]:
    """The reference .txt read the other ways it could have been meant: inverted, in RAS, or both."""
    if reference.GetName() == "CompositeTransform":
        reference = sitk.CompositeTransform(reference).GetNthTransform(0)
    parameters = np.array(reference.GetParameters())  # MatrixOffsetTransformBase: 9 matrix entries, translation
    flip = np.diag([-1.0, -1.0, 1.0])
    ras = sitk.AffineTransform(3)
    ras.SetMatrix((flip @ parameters[:9].reshape(3, 3) @ flip).ravel().tolist())
    ras.SetTranslation((flip @ parameters[9:12]).tolist())
    ras.SetCenter((flip @ np.array(reference.GetFixedParameters()[:3])).tolist())
    return {"inverse": reference.GetInverse(), "ras": ras, "ras_inverse": ras.GetInverse()}


def rigid_floor(points: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """|R p + t - truth(p)| for the least-squares rigid fit (Kabsch): what no rigid registration can beat, since the
    reference transforms are affine (up to 1.6% scaling)."""
    centre, target = points.mean(axis=0), truth.mean(axis=0)
    u, _, vt = np.linalg.svd((points - centre).T @ (truth - target))
    rotation = vt.T @ np.diag([1.0, 1.0, np.sign(np.linalg.det(vt.T @ u.T))]) @ u.T
    return np.linalg.norm((points - centre) @ rotation.T + target - truth, axis=1)


def check_subject(folder: Path, draws: int, rng: np.random.Generator, points_count: int, seed: int,
                  affine: bool = False) -> list[dict]:
    fixed = to_sitk(load_volume(folder / "study1_FLAIR.nii.gz"))
    mask = brainmask.head_mask(fixed)
    points = spatial.mask_points(mask, points_count, seed)
    rows = []
    for scan in ("T1W", "T2W"):
        moving = to_sitk(load_volume(folder / f"study1_{scan}.nii.gz"))
        reference = sitk.ReadTransform(str(folder / f"study1_{scan}_intrastudy_to_FLAIR.txt"))
        ref_points = np.array([reference.TransformPoint(tuple(p)) for p in points])
        cases = [("orig", moving, lambda x: x, None)]
        for draw in range(draws):
            rotation, shift, info = random_motion(rng)
            displaced, motion = displace(moving, rotation, shift)
            cases.append((f"moved{draw + 1}", displaced, motion, info))
        for name, image, motion, info in cases:
            truth = motion(ref_points)
            start = time.perf_counter()
            result = spatial.register(fixed, image, None, affine=affine, seed=seed)
            seconds = time.perf_counter() - start
            error = displacement(result.transform, truth, points)
            identity = displacement(sitk.Transform(3, sitk.sitkIdentity), truth, points)
            floor = rigid_floor(points, truth)
            ok = bool(error.mean() <= MEAN_MM and error.max() <= MAX_MM)
            readings = {} if name != "orig" else {
                f"vs_{reading}_mean_mm": round(float(displacement(result.transform, np.array(
                    [other.TransformPoint(tuple(p)) for p in points]), points).mean()), 3)
                for reading, other in other_readings(reference).items()}
            rows.append({"subject": folder.name, "scan": scan, "case": name,
                         "motion_deg_mm": "-" if info is None else f"{info[0]}/{info[1]}",
                         "mean_mm": round(float(error.mean()), 3), "max_mm": round(float(error.max()), 3),
                         "identity_mean_mm": round(float(identity.mean()), 3),
                         "identity_max_mm": round(float(identity.max()), 3),
                         "identity_fails": bool(identity.mean() > MEAN_MM or identity.max() > MAX_MM),
                         "rigid_floor_mean_mm": round(float(floor.mean()), 3),
                         "rigid_floor_max_mm": round(float(floor.max()), 3),
                         "init": result.initialisation, "metric": round(result.metric, 4),
                         "pass": ok, "seconds": round(seconds, 2), **readings})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def session_time(folder: Path, threads: int) -> dict:
    """Wall time of one whole `preprocess` run (three scans onto the FLAIR grid) into a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = preprocess({"flair": folder / "study1_FLAIR.nii.gz", "t1": folder / "study1_T1W.nii.gz",
                             "t2": folder / "study1_T2W.nii.gz"}, "flair", Path(tmp) / "out",
                            PreprocessOptions(threads=threads))
        return {"subject": folder.name, "seconds": round(time.perf_counter() - start, 2), "steps": result.seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/raw"))
    parser.add_argument("--subjects", default="mslong01,mslong04")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--affine", action="store_true", help="rigid then affine registration (preprocess --affine)")
    parser.add_argument("--session", action="store_true", help="also time one whole preprocess run per subject")
    args = parser.parse_args(argv)
    spatial.set_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    rows, sessions = [], []
    for subject in args.subjects.split(","):
        rows += check_subject(args.data / subject, args.draws, rng, args.points, args.seed, args.affine)
        if args.session:
            sessions.append(session_time(args.data / subject, args.threads))
    vacuous = [r for r in rows if r["case"] != "orig" and not r["identity_fails"]]
    summary = {"threshold_mean_mm": MEAN_MM, "threshold_max_mm": MAX_MM, "cases": len(rows),
               "passed": sum(r["pass"] for r in rows), "all_pass": all(r["pass"] for r in rows),
               "identity_fails_all_displaced": not vacuous,
               "registration_seconds_mean": round(float(np.mean([r["seconds"] for r in rows])), 2),
               "sessions": sessions, "rows": rows}
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"registration vs reference transforms (pass: mean <= {MEAN_MM} mm, max <= {MAX_MM} mm)")
    shown = ["subject", "scan", "case", "motion_deg_mm", "mean_mm", "max_mm", "identity_max_mm",
             "rigid_floor_mean_mm", "init", "pass", "seconds"]
    for key in shown:
        table.add_column(key, justify="right")
    for row in rows:
        table.add_row(*(str(row[k]) for k in shown))
    Console(width=200).print(table)
    text = json.dumps({k: v for k, v in summary.items() if k != "rows"} | {"rows": rows}, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if summary["all_pass"] and summary["identity_fails_all_displaced"] else 1


if __name__ == "__main__":
    sys.exit(main())
