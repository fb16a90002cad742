"""Property test: any valid affine and orientation in, the same header and voxels out."""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mrimpute.io.nifti import load_volume, save_like

from conftest import assert_same_header


@st.composite
def affines(draw) -> np.ndarray:
    """Rotation (any axis permutation and flips, plus a small oblique tilt), spacing and translation."""
    permutation = np.eye(3)[list(draw(st.permutations([0, 1, 2])))]
    flips = np.diag([draw(st.sampled_from([-1.0, 1.0])) for _ in range(3)])
    angle = draw(st.floats(-0.3, 0.3))
    tilt = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    spacing = np.diag([draw(st.floats(0.4, 5.0)) for _ in range(3)])
    affine = np.eye(4)
    affine[:3, :3] = tilt @ permutation @ flips @ spacing
    affine[:3, 3] = [draw(st.floats(-200, 200)) for _ in range(3)]
    return affine


@settings(max_examples=40, deadline=None)
@given(affine=affines(), shape=st.tuples(st.integers(16, 20), st.integers(16, 20), st.integers(2, 9)),
       qcode=st.sampled_from([0, 1, 2]), scode=st.sampled_from([0, 1, 2, 4]),
       dtype=st.sampled_from([np.int16, np.uint8, np.float32, np.float64]))
def test_header_round_trip(affine: np.ndarray, shape: tuple[int, int, int], qcode: int, scode: int, dtype) -> None:
    data = (np.arange(np.prod(shape)).reshape(shape) % 200).astype(dtype)
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=qcode)
    image.set_sform(affine, code=scode)
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.nii.gz", Path(folder) / "out.nii.gz"
        nib.save(image, source)
        volume = load_volume(source)
        save_like(volume.data, volume, target)
        original, written = nib.load(source), nib.load(target)
        assert_same_header(written, original)
        assert np.array_equal(np.asarray(written.dataobj), np.asarray(original.dataobj).astype(np.float32))
