"""Shared fixtures: a seeded phantom subject on an oblique grid, and a small random-weight model."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from mrimpute.config import ModelConfig
from mrimpute.io.checkpoint import save_checkpoint
from mrimpute.model.network import SynthesisNet
from mrimpute.phantom import oblique_affine, phantom, write_subject  # noqa: F401 (re-exported to tests)


def _find_shared_data() -> Path:
    """../shared/data beside the project (or $MRIMPUTE_SHARED_DATA, or the first shared/data above it)."""
    if os.environ.get("MRIMPUTE_SHARED_DATA"):
        return Path(os.environ["MRIMPUTE_SHARED_DATA"])
    for folder in Path(__file__).resolve().parents:
        if (folder / "shared" / "data" / "coregistered").is_dir():
            return folder / "shared" / "data"
    return Path("/work/shared/data")


SHARED_DATA = _find_shared_data()
torch.set_num_threads(1)  # pytest-xdist runs one worker per core
MODALITIES = ("t1", "t1c", "t2", "flair")


@pytest.fixture
def subject(tmp_path: Path) -> dict[str, Path]:
    """A phantom subject in RAS orientation."""
    return write_subject(tmp_path / "subject")


@pytest.fixture(scope="session")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained model (inputs and outputs t1, t1c, t2, flair) saved as a checkpoint."""
    torch.manual_seed(0)
    config = ModelConfig(inputs=list(MODALITIES), outputs=list(MODALITIES), width=0.125)
    path = tmp_path_factory.mktemp("model") / "random.pt"
    save_checkpoint(path, config, SynthesisNet(config).state_dict(), {"note": "random weights for tests"})
    return path


@pytest.fixture(scope="session")
def live_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like random_model, but every decoder's output bias is 1, so no output is stuck at the ReLU's zero."""
    torch.manual_seed(0)
    config = ModelConfig(inputs=list(MODALITIES), outputs=list(MODALITIES), width=0.125)
    network = SynthesisNet(config)
    for decoder in network.decoders.values():
        torch.nn.init.constant_(decoder.head[0].bias, 1.0)
    path = tmp_path_factory.mktemp("model") / "live.pt"
    save_checkpoint(path, config, network.state_dict(), {"note": "random weights, live outputs, for tests"})
    return path


def one_line_error(result, *needles: str) -> str:
    """The CLI run failed with exit code 1 and one line `error: ...` holding every needle; returns that line."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0], result.output
    return lines[0]


HEADER_FIELDS = ("dim", "pixdim", "qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x",
                 "qoffset_y", "qoffset_z", "srow_x", "srow_y", "srow_z", "xyzt_units")


def assert_same_header(written: nib.Nifti1Image, reference: nib.Nifti1Image) -> None:
    """The written image keeps the reference's grid: shape, affine, qform/sform and every geometry header field."""
    assert written.shape == reference.shape
    assert np.array_equal(written.affine, reference.affine)
    assert np.array_equal(written.get_qform(), reference.get_qform())
    assert np.array_equal(written.get_sform(), reference.get_sform())
    for name in HEADER_FIELDS:
        assert np.array_equal(written.header[name], reference.header[name]), name
