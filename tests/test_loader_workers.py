"""Validation loader workers live only while their set is read (memory: each is a forked copy of training)."""

import multiprocessing

import torch
from torch.utils.data import TensorDataset

from dataset.datamodule import FaceDataModule


def test_validation_workers_exit_after_their_set_and_training_workers_persist(compose):
    cfg = compose("debug=smoke")
    cfg.data.num_workers = 1
    cfg.data.persistent_workers = True
    sets = [TensorDataset(torch.arange(6)), TensorDataset(torch.arange(4)), TensorDataset(torch.arange(5))]
    dm = FaceDataModule(cfg.data, cfg.augmentation, training=None, val_datasets=sets)
    before = len(multiprocessing.active_children())
    loaders = dm.val_dataloader()
    assert len(loaders) == 3 and not any(loader.persistent_workers for loader in loaders)
    iterators = []
    for loader, data in zip(loaders, sets):
        it = iter(loader)  # kept alive, as Lightning keeps its loaders: the workers must still be gone
        seen = torch.cat([batch[0] for batch in it])
        assert torch.equal(seen, data.tensors[0])
        iterators.append(it)
        assert len(multiprocessing.active_children()) == before, "a finished validation loader kept its worker"

    train_like = dm._loader(sets[0], batch_size=2, train=True)
    assert train_like.persistent_workers
    it = iter(train_like)
    list(it)
    assert len(multiprocessing.active_children()) == before + 1  # a persistent training worker waits for the epoch
    del it
