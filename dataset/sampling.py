"""Training order and augmentation randomness as functions of (seed, epoch, index), so a run resumes exactly.

- `ResumableSampler`: the epoch's permutation comes from `seed + epoch` (a `DistributedSampler`, so Lightning leaves it
  in place and calls `set_epoch`; it shards for DDP itself). It yields `(index, epoch)` keys and can start part-way
  through an epoch (`resume_at`), which is how a mid-epoch checkpoint continues where it stopped.
- `EpochSeededDataset`: seeds numpy's and Python's global generators from `(seed, epoch, index)` before each item, so
  a sample's augmentation does not depend on which worker draws it, on how many workers there are, or on what the
  worker drew before (persistent workers included).
"""

from __future__ import annotations

import random

import numpy as np
from torch.utils.data import Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0,
                 epoch: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.epoch = epoch
        self._resume: tuple[int, int] | None = None  # (epoch, samples of this rank already trained)

    def resume_at(self, epoch: int, samples_done: int) -> None:
        """The next iteration of `epoch` skips its first `samples_done` samples (of this rank)."""
        self._resume = (int(epoch), int(samples_done))

    def __iter__(self):
        start = 0
        if self._resume is not None:
            epoch, done = self._resume
            self._resume = None
            if epoch == self.epoch:
                start = done
        epoch = self.epoch
        for index in list(super().__iter__())[start:]:
            yield index, epoch


class EpochSeededDataset(Dataset):
    """Wraps a training dataset indexed by `(index, epoch)` keys (see `ResumableSampler`)."""

    def __init__(self, base: Dataset, seed: int):
        self.base, self.seed = base, int(seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        index, epoch = key
        state = np.random.SeedSequence([self.seed, int(epoch), int(index)]).generate_state(2)
        np.random.seed(int(state[0]))
        random.seed(int(state[1]))
        return self.base[index]
