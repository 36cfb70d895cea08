"""Typed schemas of the config nodes: a typo'd key or a wrong-typed value fails at compose time, readably.

Hydra rejects unknown keys of a plain YAML tree already; only dataclass schemas (ConfigStore) also check types.
A schema default equals the value of the YAML that runs by default (tests/test_config_defaults.py); a key whose value
is the point of each option (the data set's name, the sets to validate) has no default (MISSING): every option gives it.

- `GROUP_SCHEMAS`: group -> schema, stored as `<group>/<group>_schema` and listed first in that group's YAML defaults.
- `TASK_NODES`: task name -> (its node, schema), stored as `task_schema/<node>` and listed first in
  `conf/task/<name>.yaml` as `/task_schema/<node>@<node>`. Its keys are the valid task names (`TASKS`).
- `TopLevelConf`: the entry config's run keys, checked by `tasks.config.validate_config` (a top-level schema
  at compose time would reject the nodes other groups add).
"""

import copy
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from deploy import defaults as export_defaults
from validation.protocols import STANDARD_SETS


@dataclass
class TrainerConf:
    accelerator: str = "cpu"
    devices: Any = 1  # int, "auto" or a list of ids
    num_nodes: int = 1
    strategy: Any = "auto"
    precision: str = "32"  # 32 | bf16-mixed | 16-mixed (GPU only)
    max_epochs: int = 8
    max_steps: int = -1
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: str = "norm"
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    check_val_every_n_epoch: int = 1
    num_sanity_val_steps: int = 0  # partial validation sets would give meaningless metrics
    deterministic: Any = False
    benchmark: bool | None = None
    sync_batchnorm: bool = False
    enable_progress_bar: bool = True
    enable_model_summary: bool = True
    use_distributed_sampler: bool = True
    default_root_dir: str = MISSING


@dataclass
class OptimConf:
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4  # on non-BatchNorm parameters and head.kernel; BatchNorm gets 0
    milestones: list[int] = field(default_factory=lambda: [5, 7])  # epochs
    gamma: float = 0.1
    warmup_epochs: float = 0.5  # linear warm-up, may be fractional
    warmup_start_factor: float = 0.01


@dataclass
class SyntheticConf:
    preset: str = "demo"
    seed: int = 0


@dataclass
class DataConf:
    name: str = MISSING
    synthetic: SyntheticConf | None = MISSING  # set: build/reuse the synthetic benchmark and train on its train.rec
    root: str | None = None
    rec: str | None = None  # path of train.rec (train.idx beside it)
    num_classes: int | None = None  # facts checked against the .rec at start (null = take from the file)
    num_images: int | None = None
    pack_folders: bool = False  # data.root holds <identity>/<image> folders: packed into the cache on first use
    swap_rb: bool = False  # for .rec files whose JPEGs were stored with R/B swapped (QGFace is_origin=False)
    batch_size: int = 128  # per process
    val_batch_size: int = 256
    num_workers: int = 1
    pin_memory: bool | None = None  # null = pin when the run trains on a CUDA device (docs/performance.md)
    persistent_workers: bool = True  # only honoured when num_workers > 0
    drop_last: bool = True


@dataclass
class AugmentationConf:
    views: int = 1  # 1: one augmented view; 2: L (degraded) + H views (QGFace)
    single: Any = None  # transform node {name, arguments} of the single view (dataset.augment.TRANSFORMS), or null
    view_l: Any = None
    view_h: Any = None
    flip: bool = True  # random horizontal flip after the transform(s)


@dataclass
class ValidationConf:
    sets: list[str] = MISSING
    root: str | None = None  # null = the val/ folder of the synthetic benchmark (preset below)
    preset: str = "demo"
    seed: int = 0
    fusion: str = "pre_norm_add"
    swap_rb: bool = False  # sets whose images were stored RGB
    interval: int = 1  # validate every N epochs
    monitor: str = "val/hq_avg"
    mode: str = "max"
    # every known set, name -> {kind, path, options} (validation.protocols); `sets` picks the enabled ones.
    # A YAML adds a set of an existing kind under protocols.<name>; options are overridable by name.
    protocols: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(STANDARD_SETS))


@dataclass
class EnsembleConf:
    # task=calibrate score fusion: [{name, checkpoint, backbone, embeddings_cache}], empty = no fusion
    members: list[Any] = field(default_factory=list)
    weights: list[float] | None = None  # one per member; null = logistic regression on the calibration half


@dataclass
class PathsConf:
    root_dir: str = MISSING
    output_dir: str = MISSING
    ckpt_dir: str = MISSING
    cache_dir: str = MISSING
    data_root: str = MISSING


@dataclass
class PhotoConf:
    """Shared by the photo tasks (embed, compare, enroll, identify): how photos become face crops and embeddings."""

    batch_size: int = 32
    mtcnn_weights: str | None = None  # null = alignment.mtcnn's default location
    align: str = "auto"  # auto | mtcnn | none (already aligned 112x112)
    device: str = "cpu"


@dataclass
class FinetuneConf:
    """task=train's own options (training.finetune)."""

    head_init: str = "imprint"  # imprint | random
    backbone_lr_scale: float = 1.0
    freeze_stages: int = 0
    freeze_modules: list[str] = field(default_factory=list)
    head_warmup_epochs: int = 0
    bn: str = "train"  # train | frozen
    imprint_batch_size: int = 128
    require_init_from: bool = False


@dataclass
class EvaluateConf:
    embeddings_cache: str | None = None
    roc_png: bool = True


@dataclass
class CalibrateConf:
    embeddings_cache: str | None = None
    fars: list[float] = field(default_factory=lambda: [1e-2, 1e-3, 1e-4, 1e-5, 1e-6])
    replicates: int = 1000
    confidence: float = 0.95
    seed: int = 0
    heldout: bool = True
    subject_fraction: float = 1.0
    edc: bool = True
    edc_far: float = 1e-3
    max_discard: float = 0.2
    target_fnmr: float = 0.01


@dataclass
class ExportConf:
    output: str = MISSING  # inside output_dir (conf/task/export.yaml)
    opset: int = export_defaults.OPSET
    check: bool = True
    int8: bool = False
    fp16: bool = False
    calibration: str | None = None
    calibration_count: int = export_defaults.CALIBRATION_COUNT
    check_count: int = export_defaults.CHECK_COUNT
    min_cosine: float | None = None  # null = 0.99


@dataclass
class EmbedConf:
    input_dir: str | None = None


@dataclass
class CompareConf:
    paths_a: Any = None  # a folder, an image, or a list of them
    paths_b: Any = None
    thresholds: str | None = None
    far: float = 1e-3
    protocol: str | None = None


@dataclass
class EnrollConf:
    input: str | None = None
    gallery: str = MISSING  # inside output_dir (conf/task/enroll.yaml)
    thresholds: str | None = None
    index: str = "auto"  # auto | exact | ivf
    ivf_min_size: int = 200000
    nlist: int | None = None
    target_recall: float = 0.99


@dataclass
class IdentifyConf:
    probes: str | None = None
    gallery: str | None = None
    k: int = 5
    fpir: float = 0.01
    nonmated: str | None = None
    thresholds: str | None = None
    protocol: str | None = None
    search: str = "auto"  # auto | exact | ivf


@dataclass
class LockConf:
    stale_after_s: float = 300.0
    heartbeat_s: float = 30.0


@dataclass
class TopLevelConf:
    task: str = MISSING  # set by conf/task/<name>.yaml; the entry config's defaults list picks train
    seed: int = 42
    checkpoint: str | None = None
    ckpt_path: str | None = None
    init_from: str | None = None
    run_name: str | None = None
    output_dir: str = MISSING  # ${paths.output_dir}/${task}, or the run dir (conf/task/*.yaml)
    compile: bool = False
    channels_last: bool = True
    print_config: bool = False
    nonfinite_loss: str = "stop"
    lock: LockConf = field(default_factory=LockConf)
    num_threads: int | None = None


GROUP_SCHEMAS = {
    "trainer": TrainerConf,
    "optim": OptimConf,
    "data": DataConf,
    "augmentation": AugmentationConf,
    "validation": ValidationConf,
    "paths": PathsConf,
    "ensemble": EnsembleConf,
    "photo": PhotoConf,
}

TASK_NODES = {
    "train": ("finetune", FinetuneConf),
    "evaluate": ("evaluate", EvaluateConf),
    "calibrate": ("calibrate", CalibrateConf),
    "export": ("export", ExportConf),
    "embed": ("embed", EmbedConf),
    "compare": ("compare", CompareConf),
    "enroll": ("enroll", EnrollConf),
    "identify": ("identify", IdentifyConf),
}
TASKS = tuple(TASK_NODES)
