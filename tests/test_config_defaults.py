"""One source of defaults: the typed schemas (tasks.schemas) say what the YAML under conf/ runs with.

A schema default equals the value of the option file a run composes by default: every task file (conf/task/*.yaml,
one per task node) and the option each group is given there or in the entry config. The other options of a group
(data=ms1mv2, trainer=gpu, ...) exist to differ from those defaults; each of them is still typed by its group's
schema.
"""

import functools
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from tasks.config import register_schemas
from tasks.schemas import GROUP_SCHEMAS, TASK_NODES, TASKS, FinetuneConf, TopLevelConf

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


@functools.cache
def _compose(*overrides: str) -> DictConfig:
    """The composed config with Hydra's node (its `runtime.choices`: the option each group got); unresolved and
    read only (cached)."""
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def _mismatches(schema, node: DictConfig) -> list[str]:
    """`key: schema default != YAML value` for every key the schema gives a default (MISSING ones: the YAML's)."""
    defaults = OmegaConf.structured(schema)
    return [f"{key}: schema {_plain(defaults[key])!r} != YAML {_plain(node[key])!r}"
            for key in defaults if not OmegaConf.is_missing(defaults, key)
            and _plain(defaults[key]) != _plain(node[key])]


def _task_of(group: str) -> str:
    """A task whose composed config holds `group` (the photo and ensemble nodes belong to some tasks only)."""
    for task in TASKS:
        if group in _compose(f"task={task}").hydra.runtime.choices:
            return task
    raise AssertionError(f"no task composes the group {group!r}")


@pytest.mark.parametrize("task", TASKS)
def test_schema_defaults_equal_the_yaml_a_run_composes(task):
    cfg = _compose(f"task={task}")
    choices = cfg.hydra.runtime.choices
    checked = {group: option for group, option in choices.items() if group in GROUP_SCHEMAS and option}
    assert "trainer" in checked and choices["task"] == task
    node_name, schema = TASK_NODES[task]
    bad = {f"{node_name} (conf/task/{task}.yaml)": _mismatches(schema, cfg[node_name]),
           "top level (conf/config.yaml)": _mismatches(TopLevelConf, cfg)}
    bad.update({f"{group} (conf/{group}/{option}.yaml)": _mismatches(GROUP_SCHEMAS[group], cfg[group])
                for group, option in checked.items()})
    assert not {where: m for where, m in bad.items() if m}


def _options() -> list[tuple[str, str]]:
    return [(group, p.stem) for group in [*GROUP_SCHEMAS, "task"] for p in sorted((CONF / group).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "option"), _options())
def test_every_option_of_a_schema_group_is_typed_by_its_schema(group, option):
    if group == "task":
        node_name, schema = TASK_NODES[option]
        node = _compose(f"task={option}")[node_name]
    else:
        task = "train" if group in _compose().hydra.runtime.choices else _task_of(group)
        node, schema = _compose(f"task={task}", f"{group}={option}")[group], GROUP_SCHEMAS[group]
    assert OmegaConf.get_type(node) is schema


def test_fine_tuning_schema_equals_the_defaults_training_fills_in():
    """training.finetune fills in its own defaults when a task has no finetune node (evaluation)."""
    from training.finetune import DEFAULTS

    assert OmegaConf.to_container(OmegaConf.structured(FinetuneConf)) == DEFAULTS


def test_print_config_of_compare_shows_the_compare_node_and_no_other_tasks(tmp_path):
    out = subprocess.run([sys.executable, "main.py", "task=compare", "print_config=true",
                          f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    printed = {line.split(":")[0] for line in out.stdout.splitlines() if line[:1].isalpha() and ":" in line}
    task_nodes = {node for node, _ in TASK_NODES.values()}
    assert printed & task_nodes == {"compare"}
    assert {"photo", "output_dir", "task"} <= printed and "input_dir" not in printed
    assert f"output_dir: {tmp_path / 'run' / 'compare'}" in out.stdout
    assert "task=compare needs compare.paths_a" in out.stderr  # the config prints before the task runs


def test_train_refuses_an_output_dir_apart_from_its_run_dir(tmp_path):
    from tasks.config import compose_config, validate_config

    cfg = compose_config(["debug=smoke", f"output_dir={tmp_path / 'elsewhere'}"], output_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="task=train writes into its run dir"):
        validate_config(cfg)
    validate_config(compose_config(["debug=smoke"], output_dir=str(tmp_path / "run")))
