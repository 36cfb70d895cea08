"""LightningDataModule: the training `.rec` (one or two views) and one loader per validation dataset it is given.

`resolve_training_data(data, cache_dir)` runs before the model is built (the head needs the class count): it
builds/reuses the synthetic benchmark when the data config asks for it, checks the dataset facts against the `.rec`,
and explains what is expected where when a real dataset is missing.
"""

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from dataset.sampling import EpochSeededDataset, ResumableSampler

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    rec: Path
    num_classes: int
    num_images: int
    dataset: Dataset  # the TrainRecordDataset that was scanned (labels read once; reused by the DataModule)


def synthetic_root(cache_dir: str, preset: str, seed: int) -> Path:
    """Build (or reuse) a synthetic benchmark preset; returns its cache folder (train/, val/, raw/)."""
    from dataset.synthetic import builder as synthetic

    return Path(synthetic.build(Path(cache_dir), preset, seed))


def _missing_dataset_error(data_cfg, rec: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"training data {data_cfg.name!r}: expected {rec} and {rec.with_suffix('.idx')} "
        f"(InsightFace RecordIO layout, {data_cfg.num_classes} identities). Set FACE_DATA_ROOT (or paths.data_root, "
        f"or data.root) to the folder holding it, or pack aligned 112x112 faces laid out as "
        f"<folder>/<identity>/<image> with `python -m dataset.convert pack-folders <folder> {rec.parent}` "
        f"(docs/data.md, 'Training datasets').")


def resolve_training_data(data, cache_dir) -> TrainingData:
    """Locate the training `.rec` of the `data` node, building the synthetic benchmark into `cache_dir` if
    configured, and check the dataset facts."""
    from dataset.readers import TrainRecordDataset

    if data.synthetic is not None:
        root = synthetic_root(cache_dir, data.synthetic.preset, data.synthetic.seed)
        rec = root / "train" / "train.rec"
    elif data.get("pack_folders"):  # data=folders: identity folders packed into the cache on first use
        from dataset.convert import pack_folders_cached

        if data.root is None:
            raise ValueError("data=folders needs data.root=<folder of <identity>/<image> aligned crops>")
        rec = pack_folders_cached(data.root, cache_dir)
    else:
        if data.rec is None:
            raise ValueError(f"data={data.name}: set data.rec (path of train.rec) or data.synthetic")
        rec = Path(data.rec)
    if not rec.is_file() or not rec.with_suffix(".idx").is_file():
        raise _missing_dataset_error(data, rec)
    dataset = TrainRecordDataset(str(rec), swap_rb=data.swap_rb)
    for key, found in (("num_classes", dataset.num_classes), ("num_images", len(dataset))):
        expected = data[key]
        if expected is not None and int(expected) != int(found):
            raise ValueError(f"data={data.name}: data.{key}={expected} but {rec} holds {found}; wrong file, or fix "
                             f"the fact in conf/data/{data.name}.yaml")
    if data.drop_last and int(data.batch_size) > len(dataset):
        raise ValueError(f"data.batch_size={data.batch_size} is larger than the {len(dataset)} images of {rec}: with "
                         "drop_last an epoch would have no step; lower data.batch_size")
    log.info("training data %s: %s (%d identities, %d images)", data.name, rec, dataset.num_classes, len(dataset))
    return TrainingData(rec=rec, num_classes=int(dataset.num_classes), num_images=len(dataset), dataset=dataset)


def resolve_validation_root(validation, cache_dir) -> Path:
    """The folder holding the validation sets: `validation.root`, or the synthetic build's val/."""
    if validation.root is not None:
        return Path(validation.root)
    return synthetic_root(cache_dir, validation.preset, validation.seed) / "val"


def build_transform(node, flip: bool):
    """The transform of an optional config node `{name: adaface, <argument>: value, ...}`, then the random flip."""
    from dataset.augment import TRANSFORMS, Compose, RandomHorizontalFlip

    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)  # plain lists: transforms are pickled to the workers
    transform = TRANSFORMS.build_from_node(node) if node is not None else None
    return Compose([transform, RandomHorizontalFlip() if flip else None])


def _global_rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()  # state copied into forked workers, no communication needed
    return int(os.environ.get("RANK", 0))


def seed_worker(worker_id: int) -> None:
    """Distinct augmentation streams per worker *and* per rank; OpenCV single-threaded inside workers."""
    cv2.setNumThreads(0)
    rank = _global_rank()
    seed = (torch.initial_seed() + 1_000_003 * rank) % 2**32
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class FaceDataModule(pl.LightningDataModule):
    def __init__(self, data, augmentation=None, training: TrainingData | None = None, val_datasets=(),
                 seed: int = 0):
        """data / augmentation: their config nodes; val_datasets: the validation sets' torch datasets, in order (the
        caller builds them: the data layer does not know about validation protocols). `seed` fixes the training
        order and augmentations (dataset.sampling), so a resumed run continues exactly."""
        super().__init__()
        self.data, self.augmentation = data, augmentation
        self.training = training
        self.val_datasets = list(val_datasets)
        self.seed = int(seed)
        self.train_set: Dataset | None = None
        self._resume: dict | None = None  # position of the checkpoint this run resumes from (load_state_dict)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None and self.training is not None:
            self.train_set = self._build_train_set()

    def _build_train_set(self) -> Dataset:
        from dataset.readers import TwoViewDataset

        aug, base = self.augmentation, self.training.dataset
        if aug.views == 1:
            base.transform, base.return_numpy = build_transform(aug.single, aug.flip), False
            return base
        if aug.views == 2:
            base.transform, base.return_numpy = None, True
            return TwoViewDataset(base, build_transform(aug.view_l, aug.flip), build_transform(aug.view_h, aug.flip))
        raise ValueError(f"augmentation.views must be 1 or 2, got {aug.views}")

    def _pin_memory(self) -> bool:
        """data.pin_memory, or when null: pin for a CUDA run. A copy from pageable memory waits for the previous
        step's kernels; measured on an H200 with ir_101, the loop ran at 87 % of the bare step unpinned and 92 %
        pinned (docs/performance.md)."""
        if self.data.pin_memory is not None:
            return bool(self.data.pin_memory)
        trainer = self.trainer
        root = getattr(getattr(trainer, "strategy", None), "root_device", None) if trainer is not None else None
        return root is not None and root.type == "cuda"

    def _loader(self, dataset: Dataset, batch_size: int, train: bool, sampler=None) -> DataLoader:
        data = self.data
        workers = int(data.num_workers)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            shuffle=False,  # training order comes from the sampler
            drop_last=train and data.drop_last,
            num_workers=workers,
            pin_memory=self._pin_memory(),
            # validation workers are never persistent: each is forked from the training process, and the pages it
            # writes (allocations reusing the parent's freed heap, Python refcounts) are copied; persistent workers
            # would keep one such copy per validation set alive for the whole run, so only the loader being read has
            # workers (docs/performance.md, "Memory of the loader workers")
            persistent_workers=data.persistent_workers and workers > 0 and train,  # True with 0 workers raises
            worker_init_fn=seed_worker,
        )

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        world, rank, epoch = (trainer.world_size, trainer.global_rank, trainer.current_epoch) if trainer else (1, 0, 0)
        if self._resume is not None:  # the epoch being resumed, even if Lightning has not called set_epoch yet
            epoch = int(self._resume["epoch"])
        sampler = ResumableSampler(self.train_set, num_replicas=world, rank=rank, seed=self.seed, epoch=epoch)
        if self.data.drop_last and sampler.num_samples < int(self.data.batch_size):
            raise ValueError(f"data.batch_size={self.data.batch_size} is larger than the {sampler.num_samples} images "
                             f"each of the {world} processes gets: an epoch would have no step")
        if self._resume is not None:
            sampler.resume_at(self._resume["epoch"], self._resume["batches_done"] * int(self.data.batch_size))
            self._resume = None
        return self._loader(EpochSeededDataset(self.train_set, self.seed), self.data.batch_size, train=True,
                            sampler=sampler)

    def state_dict(self) -> dict:
        """Where training stands inside the epoch (plain ints: checkpoints load with weights_only=True)."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        # from the global step, not from Lightning's per-epoch batch counter: that counter restarts at 0 when a run
        # resumed from an end-of-epoch checkpoint is resumed again (every epoch has num_training_batches batches)
        per_epoch = int(trainer.num_training_batches)
        done = int(trainer.global_step) * int(trainer.accumulate_grad_batches) - int(trainer.current_epoch) * per_epoch
        if done >= per_epoch:  # an end-of-epoch checkpoint: the next session starts the next epoch from its start
            # (reporting "epoch e, all done" made a loader whose workers iterate the sampler before Lightning's
            # set_epoch skip the whole next epoch)
            return {"epoch": int(trainer.current_epoch) + 1, "batches_done": 0}
        return {"epoch": int(trainer.current_epoch), "batches_done": max(0, done)}

    def load_state_dict(self, state: dict) -> None:
        self._resume = dict(state) if state else None

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(ds, self.data.val_batch_size, train=False) for ds in self.val_datasets]
