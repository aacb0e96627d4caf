"""Training batches: tiles -> augmentation at 101x101 -> the family's input adapter.

:class:`TrainBatches` is a ``keras.utils.PyDataset`` that serves the batches of *all*
remaining epochs as one deterministic stream: global batch ``g`` belongs to epoch
``g // steps`` and its content depends only on ``(seed, epoch, batch)``. Worker threads
may therefore prefetch across epoch boundaries, and a run resumed at epoch ``e`` sees
exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import keras
import numpy as np

from saltseg.data.adapters import Adapter
from saltseg.data.augment import augment_batch, get_augmentation
from saltseg.data.tiles import TileSet


def make_targets(masks: np.ndarray, outputs: list[str]) -> object:
    """Targets of a batch: the adapted masks, or the same masks for every output of a
    multi-output network (the deep-supervision losses derive emptiness from them)."""
    if len(outputs) == 1:
        return masks
    return {name: masks for name in outputs}


class TrainBatches(keras.utils.PyDataset):
    """Shuffled, augmented, adapted training batches for epochs ``start_epoch..epochs-1``."""

    def __init__(
        self,
        tiles: TileSet,
        adapter: Adapter,
        batch_size: int,
        augmentation: str,
        epochs: int,
        start_epoch: int = 0,
        seed: int = 0,
        outputs: list[str] | None = None,
        workers: int = 2,
        sampling: str = "epoch",
        passes: int = 1,
    ) -> None:
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
        if len(tiles) == 0:
            raise ValueError("no training tiles")
        self.tiles = tiles
        self.adapter = adapter
        self.batch_size = min(batch_size, len(tiles))
        self.augmentation = augmentation
        self.epochs = epochs
        self.start_epoch = start_epoch
        self.seed = seed
        self.outputs = outputs or ["prediction"]
        if sampling not in ("epoch", "replacement") or passes < 1:
            raise ValueError(f"sampling {sampling!r} / passes {passes}: epoch|replacement, >= 1")
        self.sampling = sampling
        self.passes = int(passes)
        # Drop the last incomplete batch (BatchNorm dislikes tiny batches).
        self.steps_per_pass = len(tiles) // self.batch_size
        self.steps_per_epoch = self.steps_per_pass * self.passes

    @property
    def num_batches(self) -> int:
        return max(0, self.epochs - self.start_epoch) * self.steps_per_epoch

    def __len__(self) -> int:
        return self.num_batches

    def epoch_order(self, epoch: int, pass_: int = 0) -> np.ndarray:
        """The tile permutation of ``epoch`` (its ``pass_``-th pass over the tiles)."""
        key = [self.seed, epoch] if pass_ == 0 else [self.seed, epoch, pass_]
        return np.random.default_rng(key).permutation(len(self.tiles))

    def batch_indices(self, epoch: int, batch: int) -> np.ndarray:
        """Tiles of one batch: a slice of the epoch's shuffled pass, or (``replacement``)
        ``batch_size`` tiles drawn at random with replacement, as the original b.e.s.
        generator did; either way a function of ``(seed, epoch, batch)`` only."""
        if self.sampling == "replacement":
            rng = np.random.default_rng([self.seed, epoch, batch, 7])
            return np.sort(rng.integers(0, len(self.tiles), size=self.batch_size))
        pass_, b = divmod(batch, self.steps_per_pass)
        order = self.epoch_order(epoch, pass_)
        return np.sort(order[b * self.batch_size : (b + 1) * self.batch_size])

    def raw_batch(self, epoch: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Augmented 101x101 images and masks of one batch."""
        idx = self.batch_indices(epoch, batch)
        images, masks = self.tiles.images[idx], self.tiles.masks[idx]
        aug = get_augmentation(self.augmentation, seed=int(_mix(self.seed, epoch, batch)))
        if aug is not None:
            images, masks = augment_batch(aug, images, masks)
        return images, masks

    def __getitem__(self, index: int):
        if not 0 <= index < self.num_batches:
            raise IndexError(index)
        epoch, batch = divmod(index + self.start_epoch * self.steps_per_epoch, self.steps_per_epoch)
        images, masks = self.raw_batch(epoch, batch)
        x = self.adapter.forward_images(images)
        y = self.adapter.forward_masks(masks)
        return x, make_targets(y, self.outputs)


def _mix(*values: int) -> int:
    """A 31-bit seed from several integers (stable across runs and platforms)."""
    ss = np.random.SeedSequence([int(v) for v in values])
    return int(ss.generate_state(1)[0] & 0x7FFFFFFF)
