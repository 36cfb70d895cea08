"""Every `python -m` entry and Python name the README documents still works after the layout change."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

ENTRIES = ["dataset.convert", "dataset.synthetic", "dataset.prepare", "models.export", "validation.summarize",
           "tasks.embed", "tasks.compare"]

NAMES = {
    "dataset.convert": ["make_rec", "write_insightface_rec", "pack_identity_folders", "unpack_rec", "load_bin",
                        "write_bin", "UnsafeBinError"],
    "dataset.align": ["align_face", "ARCFACE_TEMPLATE", "estimate_similarity"],
    "dataset.synthetic": ["build", "GENERATOR_VERSION", "PRESETS", "save_samples"],
    "dataset.recordio": ["IRHeader", "pack", "unpack", "pack_img", "unpack_img", "MXRecordIO", "MXIndexedRecordIO",
                         "RecordIOError"],
    "dataset.readers": ["TrainRecordDataset", "TwoViewDataset", "ListDataset", "ImageFolderDataset", "BinPairsDataset"],
    "dataset.datamodule": ["seed_worker", "FaceDataModule", "resolve_training_data"],
    "models": ["build_backbone", "list_backbones", "load_pretrained", "preprocess"],
    "models.mtcnn": ["MTCNN"],
    "models.export": ["export_onnx"],
    "losses": ["build_head", "HEADS"],
    "validation.verification": ["evaluate", "evaluate_loop"],
    "validation.fusion": ["fuse"],
    "validation.ijb": ["read_template_media_list", "read_template_pair_list", "image2template_feature",
                       "verification", "roc_curve", "tar_at_far"],
    "validation.suite": ["ValidationSuite"],
    "tasks.embed": ["run_embed", "build_backend", "TorchBackend", "OnnxBackend", "FaceAligner"],
    "tasks.compare": ["run_compare"],
}


@pytest.mark.parametrize("module", sorted(NAMES))
def test_documented_python_names_import(module):
    mod = importlib.import_module(module)
    missing = [n for n in NAMES[module] if not hasattr(mod, n)]
    assert not missing, f"{module} lacks {missing}"


@pytest.mark.parametrize("entry", ENTRIES)
def test_documented_module_entries_answer_help(entry):
    result = subprocess.run([sys.executable, "-m", entry, "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()


def test_model_meta_colour_order_is_documented():
    import models

    assert models.build_backbone("tiny").meta["color"] == "BGR"
    assert models.build_backbone("iresnet_r50").meta["color"] == "RGB"
