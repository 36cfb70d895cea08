"""task=evaluate: embed the chosen validation sets with any checkpoint and score them.

`python main.py task=evaluate checkpoint=PATH backbone=ir_50 validation=real` — ours, a released AdaFace `.ckpt`
or an InsightFace `.pth` (models.load_pretrained), or an exported `.onnx` file (`checkpoint=model.onnx`; backbone
ignored). A checkpoint runs `Trainer.validate` with the training module, so it shares the flip-embedding / gather /
de-duplication code (and DDP) with training; an ONNX file is embedded by onnxruntime (`inference.sets`). With
`evaluate.embeddings_cache=FILE.npz` the per-set embeddings are saved, and a later run re-scores them without
re-embedding. Writes metrics.json, metrics.md and, for IJB sets when the suite can provide the ROC, roc_<set>.png;
folder sets (validation=folders) add their pair list, report and pictures (docs/evaluation.md, "Your own faces:
the `folders` protocol"). Results go to output_dir, the run dir by default.
"""

import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig

from common import atomic
from dataset.datamodule import FaceDataModule
from tasks.run_info import write_metrics, write_run_info
from tasks.train import build_module, build_suite, trainer_kwargs, warn_overlap
from validation.report import metrics_markdown, save_roc_png

log = logging.getLogger(__name__)
FIELDS = ("index", "emb", "norm", "emb_flip", "norm_flip")


def save_embeddings(path: Path, per_set: dict[str, dict[str, np.ndarray]]) -> None:
    arrays = {f"{name}/{field}": per_set[name][field] for name in per_set for field in FIELDS}
    with atomic.atomic_write(path) as f:
        np.savez(f, **arrays)


def load_embeddings(path: Path, names: list[str]) -> dict[str, dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as data:
        missing = [n for n in names if f"{n}/emb" not in data.files]
        if missing:
            raise KeyError(f"embeddings cache {path} lacks the sets {missing}; delete it to re-embed")
        return {n: {f: data[f"{n}/{f}"] for f in FIELDS} for n in names}


def embed_sets(cfg: DictConfig, suite, keep: bool) -> tuple[dict[str, float], dict, bool]:
    """Run Trainer.validate with the checkpoint's backbone; returns (metrics, embeddings per set, is_global_zero)."""
    if cfg.checkpoint is None:
        raise ValueError(f"task={cfg.task} needs checkpoint=<path> (ours, an AdaFace .ckpt, an InsightFace .pth or "
                         f"an .onnx file), or an existing {cfg.task}.embeddings_cache")
    if str(cfg.checkpoint).endswith(".onnx"):
        from inference.backends import OnnxBackend
        from inference.sets import embed_suite

        per_set = embed_suite(OnnxBackend(cfg.checkpoint), suite, batch_size=cfg.data.val_batch_size)
        return score_cached(suite, per_set), per_set, True
    from models import load_pretrained

    module = build_module(cfg, num_classes=None)
    load_pretrained(module.model, cfg.checkpoint)
    module.attach_suite(suite)
    module.keep_val_embeddings = keep
    kwargs = trainer_kwargs(cfg.trainer)
    for key in ("max_epochs", "max_steps", "gradient_clip_val", "gradient_clip_algorithm", "accumulate_grad_batches",
                "check_val_every_n_epoch", "num_sanity_val_steps", "log_every_n_steps", "limit_train_batches"):
        kwargs.pop(key, None)
    trainer = pl.Trainer(**kwargs, logger=False, callbacks=[])
    trainer.validate(module, datamodule=FaceDataModule(cfg.data, val_datasets=suite.datasets()), verbose=False)
    return module.last_val_metrics, module.last_val_embeddings, trainer.is_global_zero


def score_cached(suite, per_set: dict[str, dict[str, np.ndarray]]) -> dict[str, float]:
    return suite.evaluate((per_set[n]["emb"], per_set[n]["norm"], per_set[n]["emb_flip"], per_set[n]["norm_flip"])
                          for n in suite.names)


def write_roc_curves(suite, out_dir: Path) -> list[Path]:
    """`roc_<set>.png` per IJB set whose protocol drew ROC curves (folder sets draw their own, see artifacts)."""
    return [save_roc_png({name: curve}, out_dir / f"roc_{name}.png", title=f"{name} 1:1 ROC")
            for name, curve in suite.curves().items() if " " not in name]


def model_label(cfg: DictConfig) -> str:
    """What was evaluated, for the printout: an ONNX file names itself (its metadata), a checkpoint the backbone."""
    checkpoint = str(cfg.checkpoint or "")
    if checkpoint.endswith(".onnx"):
        from inference.model_identity import onnx_metadata

        try:
            meta = onnx_metadata(checkpoint)
        except Exception as err:  # only a label: re-scoring cached embeddings needs no model file
            return f"ONNX, file not readable now: {type(err).__name__}"
        return f"ONNX {meta.get('name', 'unnamed')}, {meta.get('precision', 'fp32')}"
    return str(cfg.backbone.name)


def run(cfg: DictConfig) -> dict[str, float]:
    suite = build_suite(cfg)
    warn_overlap(cfg, suite)
    if suite is None:
        raise ValueError("task=evaluate: validation.sets is empty; choose validation=synthetic|hq|real or set it")
    out_dir = Path(cfg.output_dir)
    cache = cfg.evaluate.embeddings_cache
    cache = Path(cache) if cache else None
    if cache is not None and cache.is_file():
        log.info("re-scoring cached embeddings %s", cache)
        metrics, is_zero = score_cached(suite, load_embeddings(cache, list(suite.names))), True
    else:
        metrics, per_set, is_zero = embed_sets(cfg, suite, keep=cache is not None)
        if cache is not None and is_zero:
            save_embeddings(cache, per_set)
            log.info("embeddings cached in %s", cache)
    if is_zero:
        write_run_info(cfg, out_dir)
        write_metrics(metrics, out_dir)
        atomic.write_text(out_dir / "metrics.md", metrics_markdown(metrics))
        if cfg.evaluate.roc_png:
            write_roc_curves(suite, out_dir)
        suite.write_artifacts(out_dir)  # folder sets: pair list, report with null FARs, ROC / DET / histograms
        described = suite.describe()
        print(f"\nevaluation of {cfg.checkpoint or cache} ({model_label(cfg)}):\n{suite.summary(metrics)}\n"
              + (f"{described}\n" if described else "") + f"written to {out_dir}")
    return metrics
