"""The tasks `python main.py task=<name>` runs: `tasks/<name>.py` exposes `run(cfg)` for each of
conf/task/<name>.yaml (train, evaluate, calibrate, export, embed, compare, enroll, identify).

Importing the package registers the config schemas (tasks.schemas) that the YAML files list as defaults.
"""

from tasks.config import register_schemas

register_schemas()
