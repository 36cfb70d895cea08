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
    (`tasks.config_schema.compose_config`), with the run dir under this test's tmp_path."""
    from tasks.config_schema import compose_config

    def _compose(*overrides):
        return compose_config(list(overrides), output_dir=str(tmp_path / "run"))

    return _compose
