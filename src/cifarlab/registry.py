"""One registry type for every named choice: models, augmentations, explainers, corruptions, recipes,
optimizers, schedules and TTA modes (after timm's `_registry.py`).

    MODELS = Registry("model", flag="--model")
    MODELS.register("baseline", ".baseline:build", description="the Keras notebook's CNN")  # lazy target
    @MODELS.register(description="...")                                                  # or a decorator
    def resnet20(num_classes=10): ...
    MODELS.names()          # in registration order; the CLI's choices and the tests' parameters read it
    MODELS.get("resnet20")  # the target, imported on first use
    MODELS.entry("resnt20") # CifarlabError: unknown --model 'resnt20' (did you mean resnet20?); choose one of: ...

Targets may be written "module:attribute" (relative to the registry's package) so that listing the
names imports nothing heavy: `cifarlab --help` stays fast. This module imports no torch.
"""
from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import CifarlabError, did_you_mean


@dataclass(frozen=True)
class Entry:
    name: str
    target: Any  # the object itself, or "module:attribute" imported on first use
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # per-kind facts: a model's recipe, a policy's kind, ...
    package: str | None = None

    def load(self) -> Any:
        if not isinstance(self.target, str):
            return self.target
        module, _, attr = self.target.partition(":")
        obj = importlib.import_module(module, self.package)
        return getattr(obj, attr) if attr else obj


class Registry:
    """Named entries of one kind, in registration order; unknown names fail with the list of choices."""

    def __init__(self, kind: str, *, flag: str | None = None, package: str | None = None, hint: str = ""):
        self.kind = kind
        self.flag = flag  # how the user names the choice in error messages, e.g. "--model"
        self.package = package  # anchor of relative "module:attribute" targets
        self.hint = hint  # appended to the unknown-name message, e.g. "(combine with +)"
        self._entries: dict[str, Entry] = {}
        self._prefixes: dict[str, Entry] = {}
        self._prefix_names: dict[str, Callable[[], Iterable[str]]] = {}

    def register(self, name: str | Callable | None = None, target: Any = None, *, description: str | None = None,
                 **meta: Any) -> Any:
        """`register(name, target, ...)` adds an entry; `@register(...)` or `@register` decorates a target
        (its name and the first line of its docstring are the defaults)."""
        if callable(name) and target is None:  # bare @register
            return self.register()(name)
        if target is not None:
            self._add(name, target, description, meta)
            return target

        def decorate(obj: Any) -> Any:
            self._add(name or obj.__name__, obj, description, meta)
            return obj

        return decorate

    def register_prefix(self, prefix: str, resolver: Any, *, description: str = "",
                        names: Callable[[], Iterable[str]] | None = None, **meta: Any) -> None:
        """Names written `prefix:rest` go to `resolver(rest, ...)` (e.g. tv:resnet18, timm:resnet18).
        `names()`: the valid `rest`s, when they can be listed without building anything; a name outside
        them then fails at lookup, before any work (it is called then, so listing them may import)."""
        self._prefixes[prefix] = Entry(prefix, resolver, description, meta, self.package)
        if names is not None:
            self._prefix_names[prefix] = names

    def _add(self, name: str, target: Any, description: str | None, meta: dict[str, Any]) -> None:
        if not name or name in self._entries or ":" in name:
            raise ValueError(f"{self.kind} {name!r} is already registered or not a valid name")
        if description is None:
            doc = (getattr(target, "__doc__", None) or "").strip().splitlines() if not isinstance(target, str) else []
            description = doc[0] if doc else ""
        self._entries[name] = Entry(name, target, description, meta, self.package)

    def unregister(self, name: str) -> Entry:
        """Remove and return an entry (tests add throw-away entries and take them out again)."""
        if name not in self._entries:
            raise CifarlabError(self.unknown_message(name))
        return self._entries.pop(name)

    def names(self, pattern: str | None = None) -> list[str]:
        names = list(self._entries)
        return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names

    def prefixes(self) -> list[str]:
        return list(self._prefixes)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        prefix, _, rest = name.partition(":")
        return name in self._entries or (bool(rest) and prefix in self._prefixes)

    def __iter__(self) -> Iterator[str]:
        """The names, like a dict's keys: `choices=REGISTRY` works for argparse, `for name in REGISTRY` too."""
        return iter(list(self._entries))

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, name: str) -> Entry:
        """The entry of `name`; for `prefix:rest` an entry whose target calls the prefix's resolver with rest."""
        if name in self._entries:
            return self._entries[name]
        prefix, _, rest = str(name).partition(":")
        if rest and prefix in self._prefixes:
            base = self._prefixes[prefix]
            self._check_prefixed(prefix, rest)

            def resolved(*args: Any, **kwargs: Any) -> Any:
                return base.load()(rest, *args, **kwargs)

            return Entry(name, resolved, f"{prefix} {self.kind} {rest}", base.meta, self.package)
        raise CifarlabError(self.unknown_message(name))

    def _check_prefixed(self, prefix: str, rest: str) -> None:
        """A `prefix:rest` name whose prefix lists its names must be one of them (tv:resnt18 fails here)."""
        if prefix not in self._prefix_names:
            return
        valid = list(self._prefix_names[prefix]())
        if rest not in valid:
            raise CifarlabError(f"unknown {self.flag or self.kind} {f'{prefix}:{rest}'!r}"
                                f"{did_you_mean(rest, valid, prefix + ':')}; {prefix}:NAME takes "
                                f"{self._prefixes[prefix].description or 'one of its own names'}")

    def unknown_message(self, name: Any, context: str = "") -> str:
        """The one shape of every unknown-name error: `unknown --flag 'name' (did you mean a?); choose one of:
        a, b (...)`."""
        choices = ", ".join(self.names())
        prefixes = ", ".join(f"{p}:NAME" for p in self._prefixes)
        return (f"unknown {self.flag or self.kind} {name!r}{did_you_mean(name, self.names())}{context}; "
                f"choose one of: {choices}"
                + (f" (or {prefixes})" if prefixes else "") + (f" {self.hint}" if self.hint else ""))

    def get(self, name: str) -> Any:
        """The registered object (imported on first use)."""
        return self.entry(name).load()

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the registered factory: `create("resnet20", num_classes=10)`."""
        return self.get(name)(*args, **kwargs)

    def describe(self) -> dict[str, str]:
        """name -> one-line description, in registration order (the CLI's help and listings)."""
        return {e.name: e.description for e in self._entries.values()}

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
