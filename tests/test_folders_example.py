"""The README "Your own faces" example on the tiny photo preset: synthetic photos -> prepare (landmark file) ->
evaluate the "released" model -> fine-tune from it -> evaluate again -> one before/after table."""

import numpy as np
import pytest
import torch

from dataset.synthetic import builder
from dataset.synthetic.photos import PHOTO_PRESETS, build_photos, identities_used


@pytest.mark.parametrize("photo_preset", sorted(PHOTO_PRESETS))
@pytest.mark.parametrize("preset", sorted(builder.PRESETS))
def test_photo_identities_are_disjoint_from_every_preset(photo_preset, preset):
    photos = identities_used(photo_preset)
    assert photos["train"] and photos["eval"] and not photos["train"] & photos["eval"]
    for name, idents in builder.identities_used(preset).items():
        assert idents and not idents & (photos["train"] | photos["eval"]), name


def test_photo_preset_layout_and_landmarks(tmp_path):
    root = build_photos(tmp_path, "photos_tiny")
    pre = PHOTO_PRESETS["photos_tiny"]
    assert len(list((root / "train").glob("*/*.jpg"))) == pre.train_ids * pre.train_images
    assert len(list((root / "eval").glob("*/*.jpg"))) == pre.eval_ids * pre.eval_images
    lines = (root / "landmarks_eval.txt").read_text().splitlines()
    assert len(lines) == pre.eval_ids * pre.eval_images and len(lines[0].split()) == 11
    sizes = {__import__("cv2").imread(str(p)).shape[0] for p in (root / "train").glob("*/*.jpg")}
    assert len(sizes) > 3 and max(sizes) > 112  # unaligned loose crops captured at mixed quality
    assert build_photos(tmp_path, "photos_tiny") == root  # reused


def test_tiny_end_to_end_example(tmp_path):
    from dataset.prepare.folders import prepare_folders
    from models import build_backbone
    from tasks import evaluate, train
    from tasks.config import compose_config
    from validation import summarize

    root = build_photos(tmp_path / "syn", "photos_tiny")
    prepare_folders(root / "train", tmp_path / "aligned", landmarks=root / "landmarks_train.txt")
    prepare_folders(root / "eval", tmp_path / "aligned_eval", landmarks=root / "landmarks_eval.txt")
    torch.manual_seed(0)
    released = tmp_path / "released.pt"
    torch.save(build_backbone("tiny").state_dict(), released)
    common = ["backbone=tiny", "validation=folders", f"validation.root={tmp_path / 'aligned_eval'}",
              "validation.protocols.folders.levels=[clean,blur]", "num_threads=1", "logger=none",
              f"paths.cache_dir={tmp_path / 'cache'}", "trainer.enable_progress_bar=false"]
    before = evaluate.run(compose_config(["task=evaluate", f"checkpoint={released}", *common],
                                         output_dir=str(tmp_path / "eval_before")))
    train.run(compose_config(["experiment=finetune", f"init_from={released}", "data=folders",
                              f"data.root={tmp_path / 'aligned'}", "data.batch_size=8", "trainer.max_epochs=2",
                              "validation.sets=[]", *common], output_dir=str(tmp_path / "ft")))
    after = evaluate.run(compose_config(["task=evaluate", f"checkpoint={tmp_path / 'ft/checkpoints/last.ckpt'}",
                                         *common], output_dir=str(tmp_path / "eval_after")))
    for metrics in (before, after):
        assert {"folders/clean/f1", "folders/blur/acc", "folders/clean/eer"} <= set(metrics)
        assert all(np.isfinite(v) for v in metrics.values())
    assert (tmp_path / "eval_after" / "pairs_folders.csv").read_text() == \
        (tmp_path / "eval_before" / "pairs_folders.csv").read_text()  # the same pairs before and after
    text, records = summarize.summarize([tmp_path / "eval_before", tmp_path / "eval_after"])
    assert len(records) == 2 and "clean F1" in text and "blur acc" in text
