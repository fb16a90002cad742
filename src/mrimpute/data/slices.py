"""2D training samples: random crops of slices that contain brain, and a fixed validation set."""

from __future__ import annotations

import numpy as np

from .subjects import LoadedSubject

MIN_BRAIN_FRACTION = 0.02  # of the slice's area: emptier slices are not trained on


class SliceSampler:
    """Draws batches of random crops (brain-centred, random left-right flip) from loaded subjects."""

    def __init__(self, subjects: list[LoadedSubject], modalities: list[str], axis: int, crop: int,
                 lesion: bool = False, lesion_fraction: float = 0.0) -> None:
        """With `lesion`, each sample carries the subject's lesion mask as one more plane after the modalities,
        and about `lesion_fraction` of the crops are centred on a lesion voxel (lesions are a small part of the
        brain: without this a model rarely sees one)."""
        if not 0.0 <= lesion_fraction <= 1.0:
            raise ValueError("the lesion fraction must be between 0 and 1")
        self.modalities = modalities
        self.crop = crop
        self.lesion_fraction = lesion_fraction if lesion else 0.0
        if lesion and any(s.lesion is None for s in subjects):
            raise ValueError("lesion planes asked for, but a subject was loaded without its lesion mask")
        planes = [[s.volumes[m] for m in modalities] + ([s.lesion.astype(np.float32)] if lesion else [])
                  for s in subjects]
        self.stacks = [np.moveaxis(np.stack(p), axis + 1, 1) for p in planes]
        self.masks = [np.moveaxis(s.mask, axis, 0) for s in subjects]
        self.slices = []  # (subject index, slice index) pairs with enough brain
        for i, mask in enumerate(self.masks):
            area = mask.shape[1] * mask.shape[2]
            counts = mask.reshape(mask.shape[0], -1).sum(axis=1)
            self.slices += [(i, int(k)) for k in np.flatnonzero(counts > MIN_BRAIN_FRACTION * area)]
        if not self.slices:
            raise ValueError("no slice of the training set contains brain")
        self.lesion_masks = [np.moveaxis(s.lesion, axis, 0) > 0 for s in subjects] if self.lesion_fraction else []
        self.lesion_slices = [(i, int(k)) for i, m in enumerate(self.lesion_masks)
                              for k in np.flatnonzero(m.reshape(m.shape[0], -1).any(axis=1))]

    def _crop(self, subject: int, index: int, rng: np.random.Generator, on_lesion: bool = False) -> np.ndarray:
        image = self.stacks[subject][:, index]
        mask = (self.lesion_masks if on_lesion else self.masks)[subject][index]
        ys, xs = np.nonzero(mask)
        pick = rng.integers(len(ys))
        half = self.crop // 2
        padded = np.pad(image, ((0, 0), (half, half), (half, half)))
        y0, x0 = int(ys[pick]), int(xs[pick])  # crop centred on a brain pixel (in padded coordinates: +half)
        patch = padded[:, y0 : y0 + self.crop, x0 : x0 + self.crop]
        return patch[:, :, ::-1] if rng.random() < 0.5 else patch

    def batch(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """An array (modalities [+ lesion], batch, crop, crop) of random crops."""
        picks = rng.integers(len(self.slices), size=size)
        if not (self.lesion_fraction and self.lesion_slices):  # the plain draw, unchanged stream
            return np.stack([self._crop(*self.slices[p], rng) for p in picks], axis=1).copy()
        on_lesion = rng.random(size) < self.lesion_fraction
        lesion_picks = rng.integers(len(self.lesion_slices), size=size)
        crops = [self._crop(*self.lesion_slices[q], rng, True) if hit else self._crop(*self.slices[p], rng)
                 for p, q, hit in zip(picks, lesion_picks, on_lesion)]
        return np.stack(crops, axis=1).copy()


def validation_batches(sampler: SliceSampler, count: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """A fixed set of crops for validation, the same every epoch."""
    rng = np.random.default_rng(seed)
    batches, left = [], count
    while left > 0:
        batches.append(sampler.batch(min(batch_size, left), rng))
        left -= batch_size
    return batches
