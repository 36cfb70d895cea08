"""dataset.readers: training/two-view/list/folder/.bin datasets return uint8 BGR CHW tensors and the right labels."""

import multiprocessing

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dataset import recordio
from dataset.convert import make_rec, write_insightface_rec
from dataset.formats import write_bin
from dataset.readers import (
    BinPairsDataset,
    ImageFolderDataset,
    ListDataset,
    TrainRecordDataset,
    TwoViewDataset,
    to_chw_tensor,
)

BLUE, RED = (220, 20, 20), (20, 20, 220)  # BGR


def png(img):
    return cv2.imencode(".png", img)[1].tobytes()


def test_to_chw_tensor():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    t = to_chw_tensor(img)
    assert t.dtype == torch.uint8 and t.shape == (3, 2, 3) and t[2, 1, 0] == img[1, 0, 2]
    assert to_chw_tensor(np.zeros((4, 5), np.uint8)).shape == (3, 4, 5)
    with pytest.raises(ValueError, match="HxWx3"):
        to_chw_tensor(np.zeros((4, 5, 4), np.uint8))


def test_train_dataset_with_header0(tmp_path, solid):
    items = [(png(solid(BLUE if lab == 0 else RED)), lab) for lab in (0, 0, 2, 5, 5)]
    write_insightface_rec(tmp_path, items)
    ds = TrainRecordDataset(tmp_path / "train.rec")
    assert len(ds) == 5 and ds.keys == [1, 2, 3, 4, 5]
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [0, 0, 2, 5, 5]
    assert ds.num_classes == 6  # from the data: max label + 1
    img, label = ds[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 8, 8) and label == 0
    assert img[0].float().mean() > 200 and img[2].float().mean() < 40  # BGR: channel 0 is blue
    img, label = ds[3]
    assert label == 5 and img[2].float().mean() > 200


def test_train_dataset_plain_keys_array_labels_and_swap_rb(tmp_path, solid):
    idx, rec = tmp_path / "t.idx", tmp_path / "t.rec"
    with recordio.MXIndexedRecordIO(idx, rec, "w") as w:
        # Key 0 with flag > 0 but a payload is an image, not a header0; keys need not be sequential.
        w.write_idx(0, recordio.pack(recordio.IRHeader(0, [3, 1], 0, 0), png(solid(BLUE))))
        w.write_idx(7, recordio.pack(recordio.IRHeader(0, 1.0, 0, 0), png(solid(RED))))
    ds = TrainRecordDataset(rec)
    assert ds.labels.tolist() == [3, 1] and ds.num_classes == 4
    assert ds[0][1] == 3 and isinstance(ds[0][1], int)
    swapped = TrainRecordDataset(rec, swap_rb=True, return_numpy=True, transform=lambda im: im[:4])
    img, label = swapped[0]
    assert isinstance(img, np.ndarray) and img.shape == (4, 8, 3) and label == 3
    assert img[..., 2].mean() > 200  # the blue-stored file read as red


def test_train_dataset_undecodable_record_names_file_and_key(tmp_path, solid):
    write_insightface_rec(tmp_path, [(png(solid(BLUE)), 0), (b"garbage", 0)])
    ds = TrainRecordDataset(tmp_path / "train.rec")
    with pytest.raises(ValueError, match=r"train\.rec key 2"):
        ds[1]


def test_train_dataset_in_forked_workers(tmp_path, solid):
    items = [(png(solid((i * 10, 0, 0))), i) for i in range(12)]
    write_insightface_rec(tmp_path, items)
    ds = TrainRecordDataset(tmp_path / "train.rec")
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context=multiprocessing.get_context("fork"))
    labels, blues = [], []
    for imgs, lab in loader:
        labels += lab.tolist()
        blues += imgs[:, 0, 0, 0].tolist()
    assert labels == list(range(12)) and blues == [i * 10 for i in range(12)]


def test_two_view_dataset(tmp_path, solid):
    write_insightface_rec(tmp_path, [(png(solid(BLUE)), 0), (png(solid(RED)), 1)])
    base = TrainRecordDataset(tmp_path / "train.rec", return_numpy=True)
    two = TwoViewDataset(base, view_l=lambda im: im // 2, view_h=lambda im: im)
    img_l, img_h, label = two[1]
    assert label == 1 and img_l.dtype == torch.uint8 and img_h.shape == (3, 8, 8)
    assert torch.equal(img_l, img_h // 2)
    assert two.num_classes == 2 and len(two) == 2
    with pytest.raises(TypeError, match="numpy"):
        TwoViewDataset(TrainRecordDataset(tmp_path / "train.rec"), lambda x: x, lambda x: x)[0]


def test_list_and_folder_datasets(tmp_path, solid):
    for name, colour in (("b_red", RED), ("a_blue", BLUE)):
        (tmp_path / "root" / name).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(tmp_path / "root" / name / f"{i}.png"), solid(colour))
    folder = ImageFolderDataset(tmp_path / "root")
    assert folder.classes == ["a_blue", "b_red"] and folder.num_classes == 2 and len(folder) == 4
    img, label = folder[2]
    assert label == 1 and img[2].float().mean() > 200

    paths = ["a_blue/0.png", "b_red/1.png"]
    unlabelled = ListDataset(paths, root=tmp_path / "root")
    assert unlabelled[1][1] == 1 and unlabelled[0][0][0].float().mean() > 200
    assert ListDataset(paths, labels=[7, 9], root=tmp_path / "root")[1][1] == 9
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(ValueError, match=r"bad\.jpg"):
        ListDataset([tmp_path / "bad.jpg"])[0]


def test_bin_pairs_dataset(tmp_path, solid):
    write_bin(tmp_path / "lfw.bin", [png(solid(BLUE)), png(solid(RED)), b"junk", png(solid(RED))], [True, False])
    ds = BinPairsDataset(tmp_path / "lfw.bin")
    assert len(ds) == 4 and ds.issame == [True, False]
    img, index = ds[1]
    assert index == 1 and img.shape == (3, 8, 8) and img[2].float().mean() > 200
    with pytest.raises(ValueError, match=r"lfw\.bin image 2"):
        ds[2]
    # a .bin of non-images fails when the dataset is built (before training), naming the file and the image
    write_bin(tmp_path / "bad.bin", [png(solid(BLUE)), png(solid(RED)), png(solid(RED)), b"junk"], [True, False])
    with pytest.raises(ValueError, match=r"bad\.bin image 3"):
        BinPairsDataset(tmp_path / "bad.bin")


def test_make_rec_output_is_readable_by_train_dataset(tmp_path, solid):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), solid(BLUE))
    make_rec([tmp_path / f"{i}.png" for i in range(3)], tmp_path, lab_func=lambda p: 4, progress=False)
    ds = TrainRecordDataset(tmp_path / "dataset.rec")
    assert ds.labels.tolist() == [4, 4, 4] and ds[2][0][0].float().mean() > 200


def test_train_dataset_labels_without_identity_records(tmp_path, solid):
    # header0 announcing no identity records: labels come from scanning every image header instead.
    idx, rec = tmp_path / "t.idx", tmp_path / "t.rec"
    with recordio.MXIndexedRecordIO(idx, rec, "w") as w:
        w.write_idx(0, recordio.pack(recordio.IRHeader(0, [4, 4], 0, 0), b""))
        for key, lab in zip((1, 2, 3), (2, [0, 1], 2)):
            w.write_idx(key, recordio.pack(recordio.IRHeader(0, lab, key, 0), png(solid(BLUE))))
    ds = TrainRecordDataset(rec)
    assert ds.keys == [1, 2, 3] and ds.labels.tolist() == [2, 0, 2] and ds.num_classes == 3
    assert [ds[i][1] for i in range(3)] == [2, 0, 2]
