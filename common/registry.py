"""The one registry idiom of the project: a name (plus aliases) -> a factory, built from `name:` + flat arguments.

Backbones (`models.registry`), margin heads (`losses.heads`), objectives (`losses.objective`) and validation
protocols (`validation.protocols`) each own one `Registry`. A config node looks like `{name: adaface, m: 0.4, ...}`
and is built with `registry.build_from_node(node)`: `name` picks the factory, every other key is an argument.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class Registry:
    def __init__(self, kind: str):
        self.kind = kind  # "backbone", "head", ...: used in error messages
        self._factories: dict[str, Callable[..., Any]] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, aliases: tuple[str, ...] = ()) -> Callable:
        """Decorator registering a factory (function or class) under `name` and optional aliases."""

        def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
            for key in (name, *aliases):
                if key in self._factories or key in self._aliases:
                    raise ValueError(f"{self.kind} name {key!r} is registered twice")
            self._factories[name] = factory
            for alias in aliases:
                self._aliases[alias] = name
            return factory

        return wrap

    def unregister(self, name: str) -> None:
        """Remove a name and its aliases (tests that register a plug-in for their own duration)."""
        name = self.canonical(name)
        del self._factories[name]
        for alias in [a for a, target in self._aliases.items() if target == name]:
            del self._aliases[alias]

    def canonical(self, name: str) -> str:
        """Resolve an alias; an unknown name raises a KeyError listing every known one."""
        name = self._aliases.get(name, name)
        if name not in self._factories:
            raise KeyError(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names(True))}")
        return name

    def get(self, name: str) -> Callable[..., Any]:
        return self._factories[self.canonical(name)]

    def names(self, include_aliases: bool = False) -> list[str]:
        """Registered names, sorted; aliases only on request (so a test does not build one model twice)."""
        return sorted(set(self._factories) | (set(self._aliases) if include_aliases else set()))

    def __contains__(self, name: str) -> bool:
        return name in self._factories or name in self._aliases

    def build(self, name: str, *args, **kwargs) -> Any:
        return self.get(name)(*args, **kwargs)

    def build_from_node(self, node: Mapping, *args, key: str = "name", **extra) -> Any:
        """Build from a config node `{<key>: ..., arg: value, ...}`; `extra` adds arguments the node cannot know
        (e.g. a head's number of classes, read from the data)."""
        node = dict(node)
        if key not in node:
            raise KeyError(f"{self.kind} config needs a {key!r} entry; got keys {sorted(node)}")
        name = node.pop(key)
        return self.build(name, *args, **node, **extra)
