"""Shared test fixtures."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# real photos and MTCNN weights are kept out of the repository: FACE_TEST_DATA, else the sibling data folder
SHARED_DATA = Path(os.environ.get("FACE_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real photos and MTCNN weights (SHARED_DATA); tests needing them skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def weights(shared_data) -> Path:
    """The MTCNN weights of the test data folder (npz layout)."""
    path = shared_data / "mtcnn" / "mtcnn_weights.npz"
    if not path.is_file():
        pytest.skip(f"MTCNN weights not found at {path}")
    return path


@pytest.fixture
def compose(tmp_path):
    """`compose(*overrides)`: the project config composed and resolved by the public helper
    (`tasks.config.compose_config`), with the run dir under this test's tmp_path."""
    from tasks.config import compose_config

    def _compose(*overrides):
        return compose_config(list(overrides), output_dir=str(tmp_path / "run"))

    return _compose


@pytest.fixture(scope="session")
def solid():
    """`solid(bgr, size=8)`: a size x size uint8 BGR image of one colour."""
    import numpy as np

    def _solid(bgr, size: int = 8):
        img = np.zeros((size, size, 3), np.uint8)
        img[:] = bgr
        return img

    return _solid


@pytest.fixture(scope="session")
def save_tiny():
    """`save_tiny(path, seed)`: the state dict of a tiny backbone with random weights drawn from `seed`, saved at
    `path`; returns `path`."""
    import torch

    import models

    def _save_tiny(path: Path, seed: int) -> Path:
        torch.manual_seed(seed)
        torch.save(models.build_backbone("tiny").state_dict(), path)
        return path

    return _save_tiny


def _noise_faces_rec(folder: Path, num_classes: int = 6, per_class: int = 8) -> Path:
    """A tiny InsightFace-style .rec (no header0: read through its .idx keys) of coloured noise faces."""
    import cv2
    import numpy as np

    from dataset import recordio

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rec = folder / "train.rec"
    with recordio.MXIndexedRecordIO(str(folder / "train.idx"), str(rec), "w") as writer:
        for i in range(num_classes * per_class):
            label = i // per_class
            base = np.full((112, 112, 3), 40 * label % 256, np.uint8)
            img = cv2.add(base, rng.integers(0, 60, (112, 112, 3), dtype=np.uint8))
            writer.write_idx(i, recordio.pack_img(recordio.IRHeader(0, float(label), i, 0), img))
    return rec


@pytest.fixture
def tiny_cfg(tmp_path):
    """`tiny_cfg(run, *overrides, logger=None)`: debug=smoke on a hand-made 48-image, 6-class .rec (batch 16, no
    validation sets), the run dir `tmp_path/run`; exercises training without the synthetic benchmark. `logger`
    overrides the config's logger group (e.g. "none"); None keeps the default (csv). One .rec per test, shared by
    its runs."""
    from tasks.config import compose_config

    def _tiny_cfg(run: str, *overrides: str, logger: str | None = None):
        rec = tmp_path / "rec" / "train.rec"
        if not rec.is_file():
            _noise_faces_rec(rec.parent)
        logger_override = [] if logger is None else [f"logger={logger}"]
        return compose_config(["debug=smoke", "data.synthetic=null", f"data.rec={rec}", "validation.sets=[]",
                               "data.batch_size=16", *logger_override, *overrides], output_dir=str(tmp_path / run))

    return _tiny_cfg
