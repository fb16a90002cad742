"""The synthesis session: a checkpoint opened once, plan -> run -> write; the request and the outputs are checked
once, at planning; a refused plan leaves nothing behind; `synth` makes one call into it; the library entry point
`synthesize` gives the same volumes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from mrimpute.cli.app import app
from mrimpute.errors import CheckpointError, InputError, OutputError
from mrimpute.runtime import model_loading, outputs, session
from mrimpute.runtime import synthesize as engine
from mrimpute.runtime.session import SynthesisRequest, SynthesisSession
from mrimpute.runtime.synthesize import synthesize

from conftest import write_subject


def _spy(monkeypatch: pytest.MonkeyPatch, module, name: str) -> list:
    calls: list = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *args, **kwargs: calls.append(args) or real(*args, **kwargs))
    return calls


def test_plan_run_write_checks_once_and_matches_the_library_call(tmp_path: Path, random_model: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    files = write_subject(tmp_path / "s")
    reads = _spy(monkeypatch, model_loading, "load_model")
    synth = SynthesisSession.open(random_model, "cpu")
    request = SynthesisRequest({"t1": files["t1"], "t2": files["t2"]}, out_dir=tmp_path / "out" / "deep",
                               uncertainty=None, explain=tmp_path / "out" / "deep" / "winner.nii.gz")
    checked_outputs = _spy(monkeypatch, session, "check_outputs")
    checked_requests = [_spy(monkeypatch, module, "check_request") for module in (outputs, session, engine)]
    plan = synth.plan(request)
    assert set(plan.outputs) == {"t1c", "flair"} and set(plan.maps) == {"explain", "explain_json", "explain_png"}
    assert (tmp_path / "out" / "deep").is_dir()  # planning made the outputs' folder
    assert len(checked_outputs) == 1 and sum(map(len, checked_requests)) >= 1
    checks = (len(checked_outputs), sum(map(len, checked_requests)))
    result = synth.run(plan)
    written = synth.write(result, plan)
    assert (len(checked_outputs), sum(map(len, checked_requests))) == checks  # nothing checked again
    assert len(reads) == 1  # one checkpoint, read once
    assert list(written) == ["t1c", "flair", "explain", "explain_json", "explain_png"]
    sidecar = json.loads((tmp_path / "out" / "deep" / "flair_synth.json").read_text())
    assert sidecar["Model"]["file"] == random_model.name and len(sidecar["Inputs"]) == 2
    library = synthesize({"t1": files["t1"], "t2": files["t2"]}, ["t1c", "flair"], random_model, "cpu")
    for target in ("t1c", "flair"):
        assert np.array_equal(np.asarray(nib.load(written[target]).dataobj), library.outputs[target])


def test_a_refused_plan_leaves_no_folder_and_no_file(tmp_path: Path, random_model: Path) -> None:
    files = write_subject(tmp_path / "s")
    synth = SynthesisSession.open(random_model, "cpu")
    existing = tmp_path / "taken.nii.gz"
    existing.write_bytes(b"")
    with pytest.raises(OutputError, match="output exists"):
        synth.plan(SynthesisRequest({"t1": files["t1"]}, out=tmp_path / "new" / "flair.nii.gz",
                                    also_written=(existing,)))
    assert not (tmp_path / "new").exists()
    with pytest.raises(InputError, match="give at least one input"):
        synth.plan(SynthesisRequest({}, out=tmp_path / "flair.nii.gz"))
    with pytest.raises(CheckpointError, match="no lesion channel"):  # refused at planning, before any synthesis
        synth.plan(SynthesisRequest({"t1": files["t1"]}, out=tmp_path / "x" / "flair.nii.gz",
                                    lesion_mask=files["lesion"]))
    assert not (tmp_path / "x").exists()
    zscored = tmp_path / "s" / "t1_z.nii.gz"
    image = nib.load(files["t1"])
    data = image.get_fdata()
    brain = data > 0
    scores = np.where(brain, (data - data[brain].mean()) / data[brain].std(), -5.0)  # a z-scored input draws a warning
    nib.save(nib.Nifti1Image(scores.astype(np.float32), image.affine), zscored)
    plan = synth.plan(SynthesisRequest({"t1": zscored}, out=tmp_path / "y" / "z" / "flair.nii.gz", strict=True))
    assert plan.created == [tmp_path / "y" / "z", tmp_path / "y"]  # deepest first
    with pytest.raises(InputError, match="z-scored.*--strict refuses"):
        synth.run(plan)
    assert not (tmp_path / "y").exists()  # the refused run took back the folders its plan made


def test_the_outputs_named_by_the_caller_are_checked_against_the_model(tmp_path: Path, random_model: Path) -> None:
    files = write_subject(tmp_path / "s")
    synth = SynthesisSession.open(random_model, "cpu")
    with pytest.raises(CheckpointError, match="cannot synthesise pd"):
        synth.plan(SynthesisRequest({"t1": files["t1"]}, outputs={"pd": tmp_path / "pd.nii.gz"}))
    done = synth.synthesize(SynthesisRequest({"t1": files["t1"]}, outputs={"flair": tmp_path / "f.nii.gz"},
                                             sidecars=False))
    assert done.files == {"flair": tmp_path / "f.nii.gz"} and done.model == random_model
    assert not (tmp_path / "f.json").exists()


def test_synth_makes_one_call_into_the_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake(request, model, device, threads, reporter, warn, say):
        calls.append((request, model, device, threads))
        say("model: note")
        return SimpleNamespace(files={"flair": request.out}, result=SimpleNamespace(factors={"t1": 1.0, "t2": 1.0}))

    monkeypatch.setattr(session, "synthesize_subject", fake)
    monkeypatch.chdir(tmp_path)  # a short output path: the 80-column console folds a longer one (a worker's tmp)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, [
        "synth", "--t2", "b.nii.gz", "--t1", "a.nii.gz", "--out", "f.nii.gz", "--views",
        "axial,coronal", "--no-exact", "--threads", "1", "--device", "cpu", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    ((request, model, device, threads),) = calls
    assert request.inputs == {"t1": Path("a.nii.gz"), "t2": Path("b.nii.gz")}  # in the modality table's order
    assert (request.out, request.views, request.exact, request.batch_size) == (Path("f.nii.gz"),
                                                                               "axial,coronal", False, 3)
    assert (model, device, threads) == (None, "cpu", 1)
    assert "model: note" in result.stdout and "t1+t2" in result.stdout and "f.nii.gz" in result.stdout


def test_the_shipped_model_for_some_inputs() -> None:
    """Single-subject synth needs a model with every input given; dataset mode takes the one that has the most."""
    if not model_loading.shipped_model("diffusion.pt").is_file():
        pytest.skip("models/diffusion.pt is not built")
    default, diffusion = model_loading.shipped_model("default.pt"), model_loading.shipped_model("diffusion.pt")
    shelf = model_loading.ModelShelf(None, "cpu")
    opened, note = shelf.choose(["t1", "dwi", "pd"])
    assert (opened.path, note) == (default, None)  # none has all three
    opened, note = shelf.choose(["t1", "dwi", "pd"], partial=True)
    assert opened.path == diffusion and note.endswith("no encoder for dwi)")
    opened, note = shelf.choose(["t1", "pd"], partial=True)
    assert (opened.path, note) == (default, None)  # no more than the default has
    first, _ = shelf.choose(["t1", "dwi"])
    again, _ = shelf.choose(["adc"], partial=True)
    assert first is again and first.path == diffusion  # opened once
