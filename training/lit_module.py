"""LightningModule: backbone `model` + margin `head` + training `objective`, and validation as regular epochs.

The attribute names `model` and `head` match AdaFace's own LightningModule, so our checkpoints load in its code
(and `models.load_pretrained` keeps `model.*` keys). The module takes a plain dict config (never an OmegaConf
object): Lightning 2.6 loads checkpoints with `weights_only=True`, so hyper-parameters must be plain containers.

Validation (docs/evaluation.md, "Validation during training"): each validation set returns `(image, index)`; every
rank embeds its shard with and without horizontal flip; `validation.gather` collects every rank's rows once per
epoch, and every rank computes the same metrics (deterministic), which are logged unsynchronised.
"""

import bisect
import logging
import random
import warnings

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from models import build_backbone_from_node, preprocess
from validation.gather import gather_set

log = logging.getLogger(__name__)


def split_weight_decay(modules: dict[str, nn.Module]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """AdaFace's groups: BatchNorm parameters get no weight decay; every other trainable parameter does
    (which includes `head.kernel`)."""
    decay, no_decay, seen = [], [], set()
    for module in modules.values():
        for sub in module.modules():
            is_bn = isinstance(sub, nn.modules.batchnorm._BatchNorm)
            for p in sub.parameters(recurse=False):
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    (no_decay if is_bn else decay).append(p)
    return decay, no_decay


def lr_factor(step: int, steps_per_epoch: int, milestones: list[int], gamma: float, warmup_steps: int,
              warmup_start: float) -> float:
    """MultiStepLR by epoch (lr *= gamma at each milestone epoch) times an optional linear warm-up by step."""
    epoch = step // max(steps_per_epoch, 1)
    factor = gamma ** bisect.bisect_right(sorted(milestones), epoch)
    if warmup_steps > 0 and step < warmup_steps:
        factor *= warmup_start + (1.0 - warmup_start) * step / warmup_steps
    return factor


class FaceRecognitionModule(pl.LightningModule):
    def __init__(self, backbone: dict, head: dict | None = None, objective: dict | None = None,
                 optim: dict | None = None, num_classes: int | None = None, views: int = 1,
                 channels_last: bool = False, compile: bool = False, seed: int = 0, nonfinite_loss: str = "stop",
                 finetune: dict | None = None):
        """Each part from its own config node (plain dicts): `backbone`, `head`, `objective` (`name:` + arguments)
        and `optim`. num_classes None = evaluation only (no head, no objective, no optimizer). `finetune`
        (docs/finetune.md): backbone LR scale, frozen stages / modules, head-only warm-up, BatchNorm mode."""
        super().__init__()
        self.save_hyperparameters()  # plain dicts + scalars: safe for weights_only checkpoint loading
        self.optim, self.compile_backbone, self.seed = optim, bool(compile), int(seed)
        if nonfinite_loss not in ("stop", "skip"):
            raise ValueError(f"nonfinite_loss must be 'stop' or 'skip', got {nonfinite_loss!r}")
        self.nonfinite_loss = nonfinite_loss
        self.model = build_backbone_from_node(backbone)
        from training.finetune import frozen_modules
        from training.finetune import options as finetune_options

        self.finetune = finetune_options(finetune)
        self._frozen = frozen_modules(self.model, int(self.finetune["freeze_stages"]), self.finetune["freeze_modules"])
        for module in self._frozen:
            module.requires_grad_(False)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.head = None
        self.objective = None
        self.key_encoder = None
        if num_classes is not None:
            from losses import build_head_from_node
            from losses.objective import build_objective_from_node

            self.head = build_head_from_node(head, self.model.meta.get("embedding_size", 512), num_classes)
            self.objective = build_objective_from_node(objective)
            if getattr(self.objective, "needs_momentum_keys", False):
                from losses.queue import MomentumEncoder

                self.key_encoder = MomentumEncoder(self.model, self.objective.key_momentum)  # MoCo-style ablation
        self.num_views = int(views)
        self.suite = None  # ValidationSuite (attach_suite); holds no tensors, so it is not part of the checkpoint
        self.val_sizes: list[int] = []
        self.last_val_metrics: dict[str, float] = {}
        self.last_val_step: int | None = None  # the global step last_val_metrics were measured at
        self.last_val_embeddings: dict[str, dict[str, np.ndarray]] = {}
        self.keep_val_embeddings = False
        self._val_outputs: dict[int, list[tuple[torch.Tensor, ...]]] = {}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the last validation results travel with the weights (plain floats: weights-only loading), so a run killed
        # between its final checkpoint and metrics.json still reports them when resumed
        checkpoint["last_val_metrics"] = {k: float(v) for k, v in self.last_val_metrics.items()}
        checkpoint["last_val_step"] = self.last_val_step

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.last_val_metrics = dict(checkpoint.get("last_val_metrics", {}))
        self.last_val_step = checkpoint.get("last_val_step")

    def attach_suite(self, suite) -> None:
        self.suite = suite
        self.val_sizes = [] if suite is None else [len(d) for d in suite.datasets()]

    # --- forward ---------------------------------------------------------------------------------------------------
    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        x = preprocess(images, self.model.meta)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, images_uint8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 BGR [B,3,H,W] -> (unit embedding [B,D], norm [B,1])."""
        return self.model(self._prepare(images_uint8))

    def setup(self, stage: str) -> None:
        if self.compile_backbone:
            self.model.compile()  # in place: state_dict keys stay `model.*`

    # --- fine-tuning: frozen parts stay in eval mode, head-only warm-up ---------------------------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        if mode:  # Lightning switches back to train mode after every validation: re-apply the fixed parts
            fixed = list(self._frozen)
            if self.finetune["bn"] == "frozen" or self._in_head_warmup():
                fixed.append(self.model)
            for module in fixed:
                for sub in module.modules():
                    if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                        sub.eval()  # running statistics are used, never updated
        return self

    def _in_head_warmup(self) -> bool:
        return self._trainer is not None and self.current_epoch < int(self.finetune["head_warmup_epochs"])

    def on_train_epoch_start(self) -> None:
        warm = self._in_head_warmup()
        frozen = {id(p) for m in self._frozen for p in m.parameters()}
        for p in self.model.parameters():
            p.requires_grad_(not warm and id(p) not in frozen)
        if warm:
            log.info("epoch %d: head-only warm-up (finetune.head_warmup_epochs=%d), backbone fixed",
                     self.current_epoch, self.finetune["head_warmup_epochs"])
        self.train(True)

    def on_fit_start(self) -> None:
        # augmentations in the main process (num_workers=0) must differ between ranks
        seed = self.seed + 1_000_003 * self.global_rank
        np.random.seed(seed % 2**32)
        random.seed(seed)

    # --- training --------------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        *views, labels = batch
        if len(views) != self.num_views:
            raise ValueError(f"batch holds {len(views)} views but augmentation.views={self.num_views}")
        images = torch.cat(views) if len(views) > 1 else views[0]
        x = self._prepare(images)
        embeddings, norms = self.model(x)
        key_embeddings = None
        if self.key_encoder is not None:
            self.key_encoder.update(self.model)
            key_embeddings = self.key_encoder(x)[0]
        loss, logs = self.objective(self.head, embeddings, norms, labels, self.num_views,
                                    key_embeddings=key_embeddings)
        if self._nonfinite(loss, logs):
            return None  # Lightning skips this optimizer step (every rank agreed)
        batch_size = labels.shape[0]
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch_size)
        self.log("train/norm_mean", norms.detach().float().mean(), batch_size=batch_size)
        for name, value in logs.items():
            self.log(f"train/{name}" if "/" not in name else name, value, batch_size=batch_size)
        return loss

    def _nonfinite(self, loss: torch.Tensor, logs: dict) -> bool:
        """A NaN/Inf loss stops the run with a named error, or (nonfinite_loss=skip) skips the step on every rank:
        the decision is reduced across ranks so DDP ranks stay in step."""
        bad = torch.tensor(float(not torch.isfinite(loss.detach()).all()), device=loss.device)
        trainer = self._trainer  # None when called outside a Trainer (tests)
        if trainer is not None and trainer.world_size > 1:
            bad = trainer.strategy.reduce(bad, reduce_op="max")
        if not bad:
            return False
        parts = ", ".join(f"{k}={float(v):.4g}" for k, v in logs.items() if k.startswith("loss"))
        where = f"step {self.global_step} (epoch {self.current_epoch})"
        if self.nonfinite_loss == "stop":
            raise FloatingPointError(f"non-finite training loss at {where}: loss={float(loss.detach()):.4g}"
                                     f"{' (' + parts + ')' if parts else ''} on some rank; lower optim.lr, check the "
                                     "data, or set nonfinite_loss=skip to skip such steps")
        log.warning("non-finite training loss at %s: step skipped (nonfinite_loss=skip)", where)
        return True

    def configure_optimizers(self):
        opt = self.optim
        if opt.get("name", "sgd") != "sgd":
            raise ValueError(f"optim.name={opt['name']!r}: only 'sgd' is implemented")
        scale = float(self.finetune["backbone_lr_scale"])
        warmup_epochs = int(self.finetune["head_warmup_epochs"])
        frozen = {id(p) for m in self._frozen for p in m.parameters()}
        # parameters fixed only during the head-only warm-up must still be in the optimizer
        backbone = [p for p in self.model.parameters() if id(p) not in frozen]
        for p in backbone:
            p.requires_grad_(True)
        # backbone and head share two groups (decay / no decay) unless the backbone's LR is scaled: then four, so
        # checkpoints of runs without fine-tuning options keep their optimizer layout
        parts = ([(1.0, {"model": self.model, "head": self.head, "objective": self.objective})] if scale == 1.0 else
                 [(scale, {"model": self.model}), (1.0, {"head": self.head, "objective": self.objective})])
        groups = []
        for lr_scale, modules in parts:
            decay, no_decay = split_weight_decay({k: m for k, m in modules.items() if m is not None})
            groups += [{"params": decay, "weight_decay": opt["weight_decay"], "lr": opt["lr"] * lr_scale},
                       {"params": no_decay, "weight_decay": 0.0, "lr": opt["lr"] * lr_scale}]
        if warmup_epochs and self._trainer is not None:
            for p in backbone:
                p.requires_grad_(self.current_epoch >= warmup_epochs)
        optimizer = torch.optim.SGD([g for g in groups if g["params"]], lr=opt["lr"], momentum=opt["momentum"],
                                    nesterov=opt.get("nesterov", False))
        steps_per_epoch = self._steps_per_epoch()
        warmup_steps = int(round(float(opt.get("warmup_epochs", 0.0)) * steps_per_epoch))
        milestones, gamma = list(opt["milestones"]), float(opt["gamma"])
        start = float(opt.get("warmup_start_factor", 0.01))

        def schedule(step: int) -> float:
            return lr_factor(step, steps_per_epoch, milestones, gamma, warmup_steps, start)

        # stepped per optimizer step; the epoch is derived from the step so resume restores it from `last_epoch`
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _steps_per_epoch(self) -> int:
        trainer = self.trainer
        total = trainer.estimated_stepping_batches
        if trainer.max_epochs and trainer.max_epochs > 0 and total != float("inf"):
            # estimated_stepping_batches = min(max_steps, epochs * per_epoch): recompute per epoch from the loader
            per_epoch = trainer.num_training_batches
            if per_epoch != float("inf") and per_epoch > 0:
                return max(1, int(per_epoch) // max(1, trainer.accumulate_grad_batches))
            return max(1, int(total) // trainer.max_epochs)
        return max(1, int(trainer.num_training_batches))

    # --- validation ------------------------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_outputs = {}

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        images, index = batch
        emb, norm = self(images)
        emb_flip, norm_flip = self(images.flip(3))
        out = (index.long(), emb.float(), norm.float(), emb_flip.float(), norm_flip.float())
        self._val_outputs.setdefault(dataloader_idx, []).append(tuple(t.detach().cpu() for t in out))

    def on_validation_epoch_end(self) -> None:
        if self.suite is None:
            return
        metrics = self.suite.evaluate(self._gathered_sets())  # one set's embeddings in memory at a time
        with warnings.catch_warnings():  # Lightning suggests sync_dist: the values are already global
            warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
            for name, value in metrics.items():
                # identical on every rank: no sync needed, and logging on every rank lets callbacks monitor it
                self.log(name, float(value), add_dataloader_idx=False, sync_dist=False)
        self.last_val_metrics = {k: float(v) for k, v in metrics.items()}
        self.last_val_step = int(self.global_step)
        rank_zero_info(f"\nvalidation epoch {self.current_epoch} (step {self.global_step}):\n"
                       f"{self.suite.summary(metrics)}")
        self._val_outputs = {}

    def _gathered_sets(self):
        """Per set, every rank's (emb, norm, emb_flip, norm_flip), de-duplicated and in dataset order."""
        dim = self.model.meta.get("embedding_size", 512)
        for set_idx, name in enumerate(self.suite.names):
            index, *arrays = gather_set(self._val_outputs.get(set_idx, []), dim, self.val_sizes[set_idx], name,
                                        self.trainer.world_size, self.all_gather, self.device)
            if self.keep_val_embeddings:
                self.last_val_embeddings[name] = dict(zip(("index", "emb", "norm", "emb_flip", "norm_flip"),
                                                          [index, *arrays], strict=True))
            yield arrays
