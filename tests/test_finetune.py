"""Fine-tuning (docs/finetune.md): init_from starts from the pretrained weights, never random; imprinting; freezing;
backbone LR scale; BatchNorm modes; bad init_from files; resume with ckpt_path=auto wins over init_from."""

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models import build_backbone, preprocess
from models.pretrained import CheckpointError
from tasks import train as train_task
from tasks.config import compose_config, validate_config
from tasks.train import apply_init, build_module, load_init


def _folders(root: Path, identities: int = 4, per_identity: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for k in range(identities):
        for j in range(per_identity):
            path = root / f"person{k}" / f"{j}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            base = np.full((112, 112, 3), (60 * k) % 256, np.uint8)
            cv2.imwrite(str(path), cv2.add(base, rng.integers(0, 80, (112, 112, 3), dtype=np.uint8)))
    return root


def _pretrained(path: Path, name: str = "tiny") -> Path:
    """A 'released' backbone: random weights with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = build_backbone(name)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def _cfg(tmp_path, *overrides, run="run"):
    train = tmp_path / "train"
    if not train.is_dir():
        _folders(train)
    ckpt = tmp_path / "released.ckpt"
    if not ckpt.is_file():
        _pretrained(ckpt)
    return compose_config(["experiment=finetune", f"init_from={ckpt}", "backbone=tiny", "data=folders",
                           f"data.root={train}", "validation.sets=[]", "data.batch_size=8", "logger=none",
                           f"paths.cache_dir={tmp_path / 'cache'}", "num_threads=1", "trainer.max_epochs=1",
                           "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", *overrides],
                          output_dir=str(tmp_path / run))


def _module(cfg):
    from dataset.datamodule import resolve_training_data

    state = load_init(cfg, resuming=False)
    training = resolve_training_data(cfg.data, cfg.paths.cache_dir)
    module = build_module(cfg, training.num_classes)
    apply_init(cfg, module, state, training)
    return module, training


def _embed(model, images):
    return model(preprocess(images, model.meta))[0]


def test_step0_embeddings_equal_the_pretrained_models(tmp_path):
    cfg = _cfg(tmp_path)
    validate_config(cfg)
    module, training = _module(cfg)
    reference = build_backbone("tiny")
    from models import load_pretrained

    load_pretrained(reference, cfg.init_from)
    reference.eval()
    images = torch.stack([training.dataset[i][0] for i in range(6)])
    with torch.no_grad():
        expected = _embed(reference, images)
        module.eval()
        assert torch.allclose(_embed(module.model, images), expected, atol=1e-5)
        module.train()  # bn=frozen: even the training-mode forward of step 0 is the pretrained model's
        assert torch.allclose(_embed(module.model, images), expected, atol=1e-5)
    # a random start would be far away: the check is not vacuous
    with torch.no_grad():
        assert not torch.allclose(_embed(build_backbone("tiny").eval(), images), expected, atol=1e-2)


def test_head_centres_are_imprinted_from_mean_embeddings(tmp_path):
    module, training = _module(_cfg(tmp_path))
    from training.finetune import embed_with_labels

    emb, labels = embed_with_labels(module.model, training.dataset)
    kernel = module.head.kernel.detach()
    for c in range(training.num_classes):
        mean = emb[labels == c].mean(0)
        assert torch.allclose(kernel[:, c], mean / mean.norm(), atol=1e-5)
    random_head, _ = _module(_cfg(tmp_path, "finetune.head_init=random"))
    assert not torch.allclose(random_head.head.kernel.detach(), kernel, atol=1e-2)


def test_freezing_lr_scale_and_bad_module_names(tmp_path):
    cfg = _cfg(tmp_path, "finetune.freeze_stages=2", "finetune.freeze_modules=[output_layer]",
               "finetune.bn=train", "finetune.head_warmup_epochs=0")
    module, _ = _module(cfg)
    model = module.model
    assert not any(p.requires_grad for p in model.input_layer.parameters())  # stage 1: the stem
    assert not any(p.requires_grad for p in model.body[0].parameters())  # stage 2: the first resolution
    assert all(p.requires_grad for p in model.body[1].parameters())
    assert not any(p.requires_grad for p in model.output_layer.parameters())
    module.train()
    assert not model.input_layer[1].training and model.body[1].res_layer[0].training  # frozen parts: eval-mode BN
    with pytest.raises(ValueError, match=r"freeze_modules: no module named \['nope'\]"):
        _module(_cfg(tmp_path, "finetune.freeze_modules=[nope]"))
    with pytest.raises(ValueError, match="finetune.bn='warm'"):
        validate_config(_cfg(tmp_path, "finetune.bn=warm"))
    with pytest.raises(ValueError, match="experiment=finetune needs init_from"):
        validate_config(compose_config(["experiment=finetune"], output_dir=str(tmp_path / "x")))


def test_backbone_lr_scale_groups(tmp_path):
    module, _ = _module(_cfg(tmp_path, "finetune.backbone_lr_scale=0.25", "finetune.freeze_stages=1"))
    module._steps_per_epoch = lambda: 4  # outside a Trainer
    optimizer = module.configure_optimizers()["optimizer"]
    lr = module.optim["lr"]
    backbone = {id(p) for p in module.model.parameters()}
    stem = {id(p) for p in module.model.input_layer.parameters()}
    for group in optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        assert ids <= backbone or not ids & backbone  # a group is backbone-only or head-only
        assert group["lr"] == pytest.approx(lr * 0.25 if ids <= backbone else lr)
        assert not ids & stem  # frozen parameters are not optimised
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(
        [p for p in module.model.parameters() if id(p) not in stem]) + 1  # + head.kernel


def test_init_from_of_another_architecture_or_not_a_checkpoint(tmp_path):
    other = _pretrained(tmp_path / "mbf.pt", "mobilefacenet")
    cfg = _cfg(tmp_path, f"init_from={other}", "data.root=/nonexistent/never/read")
    with pytest.raises(CheckpointError, match=r"(?s)init_from=.*mbf.pt: .*does not fit backbone 'tiny'.*mobilefacenet"):
        load_init(cfg, resuming=False)
    junk = tmp_path / "notes.ckpt"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"init_from=.*notes.ckpt: .*not a checkpoint \(neither a torch zip"):
        load_init(_cfg(tmp_path, f"init_from={junk}"), resuming=False)
    with pytest.raises(FileNotFoundError, match="init_from=.*missing.ckpt: no such file"):
        load_init(_cfg(tmp_path, f"init_from={tmp_path / 'missing.ckpt'}"), resuming=False)


def test_init_from_with_ckpt_path_auto_resumes_the_interrupted_run(tmp_path, caplog):
    """First session: one epoch (then 'interrupted'); second session with the same command and ckpt_path=auto: the
    run dir's checkpoint wins, init_from is ignored (logged), training continues at the saved step."""
    first = train_task.run(_cfg(tmp_path, "run_name=ft", "ckpt_path=auto", run="ft"))
    steps = int(first["train/global_step"])
    assert steps == 4  # 32 images, batch 8
    with caplog.at_level(logging.INFO):
        second = train_task.run(_cfg(tmp_path, "run_name=ft", "ckpt_path=auto", "trainer.max_epochs=2", run="ft"))
    assert "ignored: resuming this run from its own checkpoint" in caplog.text
    assert int(second["train/global_step"]) == 2 * steps
    # the same as one uninterrupted two-epoch fine-tuning run (1 loader worker: the end-of-epoch resume path)
    whole = train_task.run(_cfg(tmp_path, "run_name=whole", "trainer.max_epochs=2", run="whole"))
    assert second["train/loss"] == pytest.approx(whole["train/loss"], rel=1e-6)


def test_after_the_head_only_warmup_the_run_scores_exactly_like_the_pretrained_model(tmp_path):
    """End to end: a fine-tuning run's validation after its head-only warm-up epoch (backbone fixed, BatchNorm
    frozen) equals task=evaluate of the pretrained file on the same folder set, to the last digit."""
    from tasks import evaluate as evaluate_task

    evaluation = _folders(tmp_path / "eval", identities=5, per_identity=3)
    val = ["validation=folders", "validation.sets=[folders]", f"validation.root={evaluation}",
           "validation.protocols.folders.levels=[clean,blur]"]
    pretrained = evaluate_task.run(compose_config(
        ["task=evaluate", f"checkpoint={_pretrained(tmp_path / 'released.ckpt')}", "backbone=tiny", "logger=none",
         "trainer.enable_progress_bar=false", *val], output_dir=str(tmp_path / "before")))
    tuned = train_task.run(_cfg(tmp_path, *val, run="ft"))
    keys = [k for k in pretrained if k.startswith("folders/")]
    assert keys and {k: tuned[k] for k in keys} == {k: pretrained[k] for k in keys}


def test_any_augmentation_works_unchanged_with_init_from(tmp_path):
    """Fine-tuning for blur is a config: QGFace's two-view "Ours" degradation with init_from builds and imprints."""
    cfg = _cfg(tmp_path, "augmentation=qgface_ours", "objective=qgface")
    validate_config(cfg)
    module, training = _module(cfg)
    assert module.num_views == 2 and module.head.kernel.shape[1] == training.num_classes
    result = train_task.run(_cfg(tmp_path, "augmentation=qgface_ours", "objective=qgface",
                                 "finetune.head_warmup_epochs=0", run="blur"))
    assert result["train/global_step"] == 4 and np.isfinite(result["train/loss"])
