"""Shared test fixtures."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Real photos and MTCNN weights beside the checkout (../shared/data); tests needing them skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def weights(shared_data) -> Path:
    """The MTCNN weights of ../shared/data (npz layout)."""
    path = shared_data / "mtcnn" / "mtcnn_weights.npz"
    if not path.is_file():
        pytest.skip(f"MTCNN weights not found at {path}")
    return path
