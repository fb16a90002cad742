"""The REPLICA-style forest on diffusion inputs and mixed subjects (issue 16): training subjects that lack some of
the model's modalities (a stroke case with DWI, ADC and FLAIR only) and lie on other grids than the scored one;
`eval --baseline replica` with the diffusion model; `forest_synthesis` writes on its inputs' grid."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from mrimpute.baselines.replica import features
from mrimpute.cli.app import app
from mrimpute.errors import InputError
from mrimpute.pipeline.baseline import ReplicaPredictor, forest_synthesis
from mrimpute.runtime.model_loading import shipped_model
from mrimpute.runtime.prepared_inputs import normalise_inputs

RUNNER = CliRunner(env={"COLUMNS": "200"})
LEVELS = {"t1": (500, 800, 300), "dwi": (600, 450, 1400), "adc": (800, 700, 300), "flair": (700, 500, 1300)}


def _subject(folder: Path, shape: tuple[int, int, int], voxel: tuple[float, float, float], seed: int,
             modalities: tuple[str, ...]) -> Path:
    """A brain (grey, white, a bright lesion) on its own grid: one file per modality, skull-stripped."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    radius = np.sqrt((grid ** 2).sum(axis=0))
    lesion = np.sqrt(((grid - rng.uniform(-0.3, 0.3, (3, 1, 1, 1))) ** 2).sum(axis=0)) < 0.25
    labels = np.where(lesion, 2, np.where(radius < 0.5, 1, 0))
    brain = radius < 0.9
    folder.mkdir(parents=True)
    affine = np.diag([*voxel, 1.0])
    for name in modalities:
        data = np.asarray(LEVELS[name], dtype=np.float32)[labels] * (1 + rng.normal(0, 0.03, shape)) * brain
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), folder / f"{name}.nii.gz")
    return folder


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("forest")
    _subject(root / "train" / "stroke", (22, 26, 14), (2.0, 2.0, 2.0), 1, ("dwi", "adc", "flair"))
    _subject(root / "train" / "glioma", (26, 24, 12), (1.0, 1.0, 5.0), 2, ("t1", "flair"))
    _subject(root / "train" / "clinical01", (24, 24, 10), (1.0, 1.0, 6.0), 3, ("t1", "dwi", "flair"))
    scored = _subject(root / "scored" / "patient", (28, 22, 12), (1.0, 1.2, 4.0), 4, ("t1", "dwi", "adc", "flair"))
    return {"root": root, "train": root / "train", "scored": scored}


def test_each_forest_learns_from_the_subjects_that_have_its_inputs(cohort) -> None:
    predictor = ReplicaPredictor(cohort["train"], ["stroke", "glioma", "clinical01"], ["t1", "flair", "dwi", "adc"],
                                 n_jobs=1)
    raw = {m: nib.load(cohort["scored"] / f"{m}.nii.gz").get_fdata().astype(np.float32) for m in ("t1", "dwi", "adc")}
    prepared = normalise_inputs(raw)  # encoder units, as eval gives them (get_fdata: Fortran-ordered arrays)
    inputs, mask = prepared.volumes, prepared.mask
    results = predictor(inputs, mask, [("dwi",), ("t1",), ("dwi", "adc")], "flair")
    assert predictor.used[(("dwi",), "flair")] == ["stroke", "clinical01"]
    assert predictor.used[(("t1",), "flair")] == ["glioma", "clinical01"]
    assert predictor.used[(("dwi", "adc"), "flair")] == ["stroke"]
    truth = nib.load(cohort["scored"] / "flair.nii.gz").get_fdata()
    for synthesis in results.values():  # on the scored subject's own grid, and it learnt the mapping
        assert synthesis.shape == mask.shape
        assert np.corrcoef(synthesis[mask], truth[mask])[0, 1] > 0.95
    with pytest.raises(InputError, match="no baseline training subject has t1\\+adc and flair"):
        predictor(inputs, mask, [("t1", "adc")], "flair")


def test_forest_synthesis_writes_on_the_first_inputs_grid(cohort, tmp_path: Path) -> None:
    scored = cohort["scored"]
    out, used = forest_synthesis(cohort["train"], ["stroke", "glioma"], {"dwi": scored / "dwi.nii.gz",
                                 "adc": scored / "adc.nii.gz"}, "flair", tmp_path / "flair_forest.nii.gz", n_jobs=1)
    assert used == ["stroke"]
    written, reference = nib.load(out), nib.load(scored / "dwi.nii.gz")
    assert written.shape == reference.shape and np.array_equal(written.affine, reference.affine)
    assert written.header["descrip"].tobytes().startswith(b"REPLICA-style forest flair from dwi+adc")


@pytest.mark.skipif(not shipped_model("diffusion.pt").is_file(), reason="models/diffusion.pt is not built")
def test_eval_baseline_replica_with_diffusion_inputs(cohort, tmp_path: Path) -> None:
    """`eval --baseline replica` with the diffusion model: its forest trains on the model's training subject
    (clinical01, which has no ADC) and scores a subject on another grid; dwi+adc is refused in one line."""
    args = ["eval", "--model", str(shipped_model("diffusion.pt")), "--data", str(cohort["root"] / "scored"),
            "--baseline", "replica", "--baseline-data", str(cohort["train"]), "--targets", "flair", "--no-qc",
            "--threads", "1", "--device", "cpu"]
    result = RUNNER.invoke(app, [*args, "--subsets", "dwi;t1,dwi", "--out-dir", str(tmp_path / "ok")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "ok" / "summary.json").read_text())
    text = json.dumps(summary)
    assert '"dwi"' in text and '"t1+dwi"' in text
    result = RUNNER.invoke(app, [*args, "--subsets", "dwi,adc", "--out-dir", str(tmp_path / "refused")])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert lines[-1].startswith("error: ") and "no baseline training subject has dwi+adc and flair" in lines[-1]


def test_features_do_not_depend_on_memory_order(cohort) -> None:
    """nibabel's get_fdata() gives Fortran-ordered arrays: the features must be those of the C-ordered copy (the
    neighbour offsets come from strides and index a C-order ravel)."""
    volumes = {m: nib.load(cohort["scored"] / f"{m}.nii.gz").get_fdata().astype(np.float32) for m in ("t1", "dwi")}
    assert all(v.flags["F_CONTIGUOUS"] and not v.flags["C_CONTIGUOUS"] for v in volumes.values())
    mask = volumes["dwi"] > 0
    ordered = {m: np.ascontiguousarray(v) for m, v in volumes.items()}
    assert np.array_equal(features(volumes, mask, ("t1", "dwi")), features(ordered, mask, ("t1", "dwi")))
