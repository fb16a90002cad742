"""Build the embedded sample subject (open_ms patient07, CC-BY) from ../shared/data: cropped to the head, int16.

Run from the project root: .venv/bin/python tools/make_sample.py
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

SOURCE = Path("../shared/data/coregistered/ms07")
TARGET = Path("src/mrimpute/sample/ms07")
MARGIN = 4


def main() -> None:
    TARGET.mkdir(parents=True, exist_ok=True)
    images = {name: nib.load(SOURCE / f"{name}.nii.gz") for name in ("t1", "t1c", "t2", "flair", "lesion")}
    head = np.logical_or.reduce([np.asanyarray(images[n].dataobj) != 0 for n in ("t1", "t1c", "t2", "flair")])
    box = []
    for axis in range(3):
        present = np.flatnonzero(head.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(max(0, present[0] - MARGIN), min(head.shape[axis], present[-1] + 1 + MARGIN)))
    for name, image in images.items():
        cropped = image.slicer[tuple(box)]
        data = np.asanyarray(cropped.dataobj).astype(np.float32)
        header = cropped.header.copy()
        if name == "lesion":
            header.set_data_dtype(np.uint8)
            out = nib.Nifti1Image(data.astype(np.uint8), cropped.affine, header)
        else:
            header.set_data_dtype(np.int16)
            out = nib.Nifti1Image(data, cropped.affine, header)
            scale = float(np.abs(data).max()) / 32000.0
            out.header.set_slope_inter(scale, 0.0)
        nib.save(out, TARGET / f"{name}.nii.gz")
        print(name, cropped.shape, (TARGET / f"{name}.nii.gz").stat().st_size)


if __name__ == "__main__":
    main()
