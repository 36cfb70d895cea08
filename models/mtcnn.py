"""Moved to `alignment.mtcnn`; this name keeps `models.mtcnn.MTCNN` and friends importable."""

from alignment.mtcnn import (
    DEFAULT_WEIGHTS,
    MTCNN,
    WEIGHTS_ENV,
    UnsafePickleError,
    default_weights_path,
    load_mtcnn_weights,
    load_pickled_npy_dict,
)

__all__ = ["DEFAULT_WEIGHTS", "MTCNN", "WEIGHTS_ENV", "UnsafePickleError", "default_weights_path",
           "load_mtcnn_weights", "load_pickled_npy_dict"]
