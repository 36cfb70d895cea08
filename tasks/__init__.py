"""Task entry points dispatched by main.py on `cfg.task` (train, evaluate, calibrate, export, embed, compare,
enroll, identify).

Importing the package registers the config schemas (tasks.config_schema) that the YAML groups list as defaults.
"""

from tasks.config_schema import register as _register_schemas

_register_schemas()
