"""Safe YAML loading of sequences and run configs, with one-line errors naming the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cvqa_bench.config.base import (ConfigError, StrictModel, builtin_names, find_builtin, nearest_key,
                                    resolve_config_path, resolve_path)
from cvqa_bench.config.run import RunConfig
from cvqa_bench.config.sequence import SequenceSpec


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with the same key twice (the last one would win silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """``yaml.safe_load`` a file; malformed YAML raises :class:`ConfigError` naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from exc
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: safe loading
    except RecursionError as exc:
        raise ConfigError(f"{path}: YAML nested too deeply") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: malformed YAML: {problem}") from exc


def validate_model(model_cls: type[StrictModel], data: Any, source: str) -> Any:
    """Validate ``data`` against ``model_cls``; errors become one :class:`ConfigError` line per field."""
    if data is None:
        data = {}
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc, model_cls)}") from exc


def format_validation_error(exc: ValidationError, model_cls: type[StrictModel] | None = None) -> str:
    """One line per failing field: ``field.path: message (got value)``; an unknown key gets a did-you-mean."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            near = nearest_key(model_cls, err["loc"]) if model_cls is not None else None
            msg = f"unknown key (did you mean {near!r}?)" if near else "unknown key (check the spelling)"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def resolve_sequence_path(name_or_path: str) -> Path:
    """A sequence given by name (``tasks/<name>.yaml``, local or built in) or by path to a YAML file."""
    candidate = resolve_path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"} or candidate.exists():
        if not candidate.is_file():
            raise ConfigError(f"{candidate}: sequence file not found")
        return candidate
    path = find_builtin("tasks", f"{name_or_path}.yaml")
    if path is None:
        from cvqa_bench.registry import Registry

        known = Registry("sequence")
        for name in sequence_names():
            known.add_lazy(name, "cvqa_bench.config.sequence:SequenceSpec", "")
        known.check(name_or_path)
    return path


def sequence_names() -> list[str]:
    """Names of the sequences in ``./tasks`` and the built-in ``tasks/``."""
    return builtin_names("tasks")


def load_sequence(name_or_path: str) -> tuple[SequenceSpec, Path]:
    """Load and validate a sequence YAML; returns the spec and the file it came from."""
    path = resolve_sequence_path(name_or_path)
    return validate_model(SequenceSpec, read_yaml(path), str(path)), path


def reorder_tasks(seq: SequenceSpec, order: str | None) -> SequenceSpec:
    """The sequence with its tasks permuted: ``reverse``, ``alphabetical`` or ``"name,name,..."`` (all tasks once)."""
    if order is None:
        return seq
    by_name = {t.name: t for t in seq.tasks}
    if order == "reverse":
        names = list(reversed(by_name))
    elif order == "alphabetical":
        names = sorted(by_name)
    else:
        names = [n.strip() for n in order.split(",") if n.strip()]
        if sorted(names) != sorted(by_name):
            raise ConfigError(
                f"task_order {order!r} must name every task of {seq.name!r} exactly once: {', '.join(by_name)}"
            )
    return seq.model_copy(update={"tasks": [by_name[n] for n in names]})


def load_run_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load a run config YAML (or the defaults) and apply dotted ``overrides`` such as ``train.lr``."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = resolve_config_path(path)  # a preset by name too: `--config default`
        source = str(path)
        loaded = read_yaml(path)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a run config must be a mapping, got {type(loaded).__name__}")
        data = loaded or {}
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    return validate_model(RunConfig, data, source)


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data["a"]["b"] = value`` for ``dotted == "a.b"``, creating mappings on the way."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def parse_seed_list(text: str | None) -> list[int | None]:
    """``--seeds 0,1,2`` as a list of ints (``[None]`` when not given).

    Raises:
        ConfigError: an entry is not an integer.
    """
    if not text:
        return [None]
    try:
        return [int(s) for s in text.split(",") if s.strip()] or [None]
    except ValueError:
        raise ConfigError(f"--seeds expects comma-separated integers (e.g. 0,1,2), got {text!r}") from None
