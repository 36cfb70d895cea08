"""Register the config schemas (tasks.schemas) and check a composed config: types, task name, value ranges.

`compose_config` composes the project config outside `@hydra.main` (tests, notebooks).
"""

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tasks.schemas import GROUP_SCHEMAS, TASK_NODES, TASKS, TopLevelConf


def _run_id(run_name: str | None, timestamp: str) -> str:
    """Run-dir leaf: the stable `run_name` when given (resumable), else a timestamp."""
    return str(run_name) if run_name else timestamp


def register_schemas() -> None:
    """Store the group and task-node schemas and the resolvers; idempotent (tests and main.py both call it)."""
    cs = ConfigStore.instance()
    for group, node in GROUP_SCHEMAS.items():
        cs.store(group=group, name=f"{group}_schema", node=node)
    for node_name, node in TASK_NODES.values():
        cs.store(group="task_schema", name=node_name, node=node)
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", _run_id)


def validate_config(cfg: DictConfig) -> None:
    """Type-check the top-level scalars and the task name; raise a ValueError naming the key."""
    top = {k: cfg[k] for k in TopLevelConf.__dataclass_fields__ if k in cfg}
    try:
        OmegaConf.merge(OmegaConf.structured(TopLevelConf), top)
    except OmegaConfBaseException as err:
        raise ValueError(f"invalid top-level config value: {err}") from None
    if cfg.task not in TASKS:
        raise ValueError(f"task={cfg.task!r} is not one of {', '.join(TASKS)}")
    if cfg.task == "train" and str(cfg.output_dir) != str(cfg.paths.output_dir):
        # checkpoints, logs, the lock and the results of a run live together: resume reads them from one place
        raise ValueError(f"task=train writes into its run dir, not output_dir={cfg.output_dir}: choose the run dir "
                         "with run_name=<name> or hydra.run.dir=<dir>")
    check_ranges(cfg)


def _range_rules(cfg: DictConfig) -> list[tuple[str, object, bool, str]]:
    """(key, value, ok, what it must be) for every value a run needs in range."""
    rules = []

    def rule(key: str, ok, must: str) -> None:
        node, *path = key.split(".")
        value = cfg.get(node)
        for part in path:
            value = value.get(part) if value is not None else None
        if value is not None:
            rules.append((key, value, bool(ok(value)), must))

    rule("data.batch_size", lambda v: v >= 1, ">= 1")
    rule("data.val_batch_size", lambda v: v >= 1, ">= 1")
    rule("data.num_workers", lambda v: v >= 0, ">= 0")
    rule("optim.lr", lambda v: v > 0, "> 0")
    rule("optim.momentum", lambda v: 0 <= v < 1, "in [0, 1)")
    rule("optim.weight_decay", lambda v: v >= 0, ">= 0")
    rule("optim.gamma", lambda v: 0 < v <= 1, "in (0, 1]")
    rule("optim.warmup_epochs", lambda v: v >= 0, ">= 0")
    rule("optim.warmup_start_factor", lambda v: 0 < v <= 1, "in (0, 1]")
    rule("optim.milestones", lambda v: all(m >= 0 for m in v), "epochs >= 0")
    rule("trainer.max_steps", lambda v: v == -1 or v > 0, "-1 (no limit) or > 0")
    rule("trainer.accumulate_grad_batches", lambda v: v >= 1, ">= 1")
    rule("trainer.log_every_n_steps", lambda v: v >= 1, ">= 1")
    rule("trainer.check_val_every_n_epoch", lambda v: v >= 1, ">= 1")
    rule("validation.interval", lambda v: v >= 1, ">= 1")
    rule("lock.heartbeat_s", lambda v: v > 0, "> 0")
    rule("lock.stale_after_s", lambda v: v > cfg.lock.heartbeat_s, "> lock.heartbeat_s")
    rule("callbacks.steps.every_n_train_steps", lambda v: v >= 1, ">= 1")
    rule("callbacks.steps.save_top_k", lambda v: v >= 1 or v == -1, ">= 1 (or -1: keep all)")
    rule("nonfinite_loss", lambda v: v in ("stop", "skip"), "stop or skip")
    rule("calibrate.fars", lambda v: len(v) > 0 and all(0 < f < 1 for f in v), "a non-empty list of FARs in (0, 1)")
    rule("calibrate.replicates", lambda v: v >= 1, ">= 1")
    rule("calibrate.confidence", lambda v: 0 < v < 1, "in (0, 1)")
    rule("calibrate.subject_fraction", lambda v: 0 < v <= 1, "in (0, 1]")
    rule("calibrate.edc_far", lambda v: 0 < v < 1, "in (0, 1)")
    rule("calibrate.max_discard", lambda v: 0 < v < 1, "in (0, 1)")
    rule("calibrate.target_fnmr", lambda v: 0 < v < 1, "in (0, 1)")
    rule("compare.far", lambda v: 0 < v < 1, "in (0, 1)")
    rule("export.calibration_count", lambda v: v >= 1, ">= 1")
    rule("export.check_count", lambda v: v >= 1, ">= 1")
    rule("export.min_cosine", lambda v: -1 <= v <= 1, "in [-1, 1]")
    rule("photo.batch_size", lambda v: v >= 1, ">= 1")
    rule("enroll.index", lambda v: v in ("auto", "exact", "ivf"), "auto, exact or ivf")
    rule("enroll.ivf_min_size", lambda v: v >= 1, ">= 1")
    rule("enroll.target_recall", lambda v: 0 < v <= 1, "in (0, 1]")
    rule("enroll.nlist", lambda v: v >= 1, ">= 1")
    rule("identify.k", lambda v: v >= 1, ">= 1")
    rule("identify.fpir", lambda v: 0 < v < 1, "in (0, 1)")
    rule("identify.search", lambda v: v in ("auto", "exact", "ivf"), "auto, exact or ivf")
    ensemble = cfg.get("ensemble")
    if ensemble is not None and ensemble.get("weights") is not None:
        w = list(ensemble.weights)
        rules.append(("ensemble.weights", w, len(w) == len(ensemble.members) and sum(w) > 0,
                      f"one weight per member ({len(ensemble.members)}), summing to > 0"))
    if ensemble is not None:
        for i, member in enumerate(ensemble.get("members") or []):
            rules.append((f"ensemble.members[{i}]", dict(member), bool(member.get("checkpoint")),
                          "{name, checkpoint, backbone, embeddings_cache} with a checkpoint"))
    rules += _folder_set_rules(cfg)
    data = cfg.get("data")
    if data is not None and data.get("pack_folders"):
        rules.append(("data.root", data.get("root"), data.get("root") is not None,
                      "set for data=folders: the folder of <identity>/<image> aligned crops"))
    trainer = cfg.get("trainer")
    if trainer is not None and trainer.get("max_epochs") is not None:
        epochs, steps = trainer.max_epochs, trainer.get("max_steps", -1)
        rules.append(("trainer.max_epochs", epochs, epochs > 0 or (epochs == -1 and steps > 0),
                      "> 0, or -1 with trainer.max_steps > 0"))
    return rules


def _folder_set_rules(cfg: DictConfig) -> list[tuple[str, object, bool, str]]:
    """Enabled sets of kind `folders` (docs/evaluation.md, "Your own faces: the `folders` protocol"): their options,
    before any image is read."""
    from dataset.synthetic.quality import DEGRADATIONS

    validation = cfg.get("validation")
    if validation is None or not validation.get("sets"):
        return []
    rules = []
    for name in validation.sets:
        spec = (validation.get("protocols") or {}).get(name)
        if spec is None or spec.get("kind") != "folders":
            continue
        key = f"validation.protocols.{name}"
        path = spec.get("path")
        rules.append(("validation.root", validation.root, validation.root is not None
                      or (path is not None and str(path).startswith("/")),
                      f"set for the folder set {name!r}: the folder of <identity>/<image> aligned crops"))
        levels = list(spec.get("levels") or [])
        rules.append((f"{key}.levels", levels, all(level in DEGRADATIONS for level in levels),
                      f"names of degradation levels: {', '.join(DEGRADATIONS)}"))
        rules.append((f"{key}.degrade", spec.get("degrade"), spec.get("degrade") in ("second", "both"),
                      "second or both"))
        rules.append((f"{key}.impostor_ratio", spec.get("impostor_ratio"), (spec.get("impostor_ratio") or 0) > 0,
                      "> 0"))
        rules.append((f"{key}.genuine_per_identity", spec.get("genuine_per_identity"),
                      (spec.get("genuine_per_identity") or 0) >= 1, ">= 1"))
        rules.append((f"{key}.folds", spec.get("folds"), (spec.get("folds") or 0) >= 2, ">= 2"))
    return rules


def check_ranges(cfg: DictConfig) -> None:
    """Out-of-range values fail here, before any data is read, naming every offending key."""
    bad = [f"{key}={value!r} (must be {must})" for key, value, ok, must in _range_rules(cfg) if not ok]
    if cfg.get("finetune") is not None:
        from training.finetune import options

        try:
            options(OmegaConf.to_container(cfg.finetune, resolve=True))
        except ValueError as err:
            bad.append(str(err))
        if cfg.finetune.get("require_init_from") and cfg.get("task", "train") == "train" and not cfg.get("init_from"):
            bad.append("init_from=None (experiment=finetune needs init_from=<pretrained file>: a fine-tuning run "
                       "never starts from random weights)")
    if bad:
        raise ValueError("invalid config value" + ("s" if len(bad) > 1 else "") + ": " + "; ".join(bad))


def compose_config(overrides: list[str] | tuple[str, ...] = (), output_dir: str | None = None,
                   config_dir: str | None = None) -> DictConfig:
    """Compose and resolve the project config outside `@hydra.main` (tests, notebooks).

    `output_dir` stands in for Hydra's run dir (`${hydra:runtime.output_dir}`), which only a real run sets.
    """
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    register_schemas()
    config_dir = config_dir or str(Path(__file__).resolve().parents[1] / "conf")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir or Path.cwd() / "outputs" / "composed")
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    OmegaConf.resolve(cfg)
    return cfg
