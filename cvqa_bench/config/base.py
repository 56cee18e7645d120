"""What every config module shares: the project's folders, the config error, the strict base model.

The built-in sequences (``tasks/*.yaml``) and presets (``configs/**``) are package data in
``cvqa_bench/builtin/``; the repository's ``tasks/`` and ``configs/`` are links to those folders, so
git holds one copy of each file. A checkout's own folders take precedence over the installed ones.

The one path rule (docs/paths.md): a relative path, wherever it is written (command line, ``--set``, run
config, experiment file), is relative to the working directory; a ``tasks/...`` or ``configs/...`` path
that the working directory lacks is the built-in file of that name. Nothing is written under the package
folder: caches go to :func:`cache_root`, outputs to the paths given.
"""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
PROJECT_ROOT = PACKAGE_ROOT.parent


def in_checkout() -> bool:
    """Whether the package runs from a source checkout of cvqa-bench (editable install), not an installed wheel."""
    try:
        return 'name = "cvqa-bench"' in (PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def builtin_dir(name: str) -> Path:
    """``tasks`` or ``configs``: the checkout's folder when there is one, else the installed package data."""
    local = PROJECT_ROOT / name
    if in_checkout() and local.is_dir():
        return local
    return Path(str(resources.files("cvqa_bench") / "builtin" / name))  # a file-system install (not a zip)


def cache_root() -> Path:
    """Where generated data, the tiny model and vision features are cached: ``$CVQA_CACHE`` when set, else the
    checkout's ``.cache/cvqa`` when running from a checkout, else the user cache folder
    (``platformdirs.user_cache_path("cvqa")``: ``$XDG_CACHE_HOME/cvqa`` or ``~/.cache/cvqa`` on Linux)."""
    env = os.environ.get("CVQA_CACHE")
    if env:
        return Path(env).expanduser()
    if in_checkout():
        return PROJECT_ROOT / ".cache" / "cvqa"
    from platformdirs import user_cache_path

    return user_cache_path("cvqa", appauthor=False)


TASKS_DIR = builtin_dir("tasks")
CONFIGS_DIR = builtin_dir("configs")


def resolve_path(path: str | Path) -> Path:
    """A path as the user wrote it, by the one path rule: relative to the working directory, and a
    ``tasks/...`` or ``configs/...`` path the working directory lacks is the built-in file
    (``configs/models/tiny.yaml`` works from any folder and from an installed wheel)."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists() or not path.parts or path.parts[0] not in ("tasks", "configs"):
        return path
    builtin = builtin_dir(path.parts[0]).joinpath(*path.parts[1:])
    return builtin if builtin.exists() else path


def resolve_config_path(path: str | Path) -> Path:
    """A config or experiment file given by path (:func:`resolve_path`) or by the name of a built-in preset
    (``default``, ``reproduce``: ``configs/<name>.yaml``, local first)."""
    candidate = Path(path)
    if not candidate.exists() and candidate.suffix == "" and len(candidate.parts) == 1:
        found = find_builtin("configs", f"{candidate}.yaml")
        if found is not None:
            return found
    return resolve_path(candidate)


def search_dirs(name: str) -> list[Path]:
    """Where ``tasks``/``configs`` files are looked up, first match wins: ``./<name>`` of the working
    directory (a checkout or a user's own folder), then the built-in one."""
    local = Path.cwd() / name
    builtin = builtin_dir(name)
    return [local, builtin] if local.is_dir() and local.resolve() != builtin.resolve() else [builtin]


def find_builtin(name: str, filename: str) -> Path | None:
    """``<dir>/<filename>`` in the first of :func:`search_dirs` that has it, or None."""
    return next((d / filename for d in search_dirs(name) if (d / filename).is_file()), None)


def builtin_names(name: str) -> list[str]:
    """The stems of the ``*.yaml`` files of every :func:`search_dirs` folder, sorted."""
    return sorted({p.stem for d in search_dirs(name) for p in d.glob("*.yaml")})


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the field."""


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=False)


def nearest_key(model_cls: type[BaseModel], loc: Sequence[Any]) -> str | None:
    """The field name closest to the unknown key at ``loc`` (a pydantic error location), or None."""
    fields = model_cls.model_fields
    for part in loc[:-1]:
        if isinstance(part, int):  # a list index: the element model stays the same
            continue
        field = fields.get(str(part))
        inner = _model_in(field.annotation) if field is not None else None
        if inner is None:
            return None
        fields = inner.model_fields
    matches = difflib.get_close_matches(str(loc[-1]), list(fields), n=1, cutoff=0.6) if loc else []
    return matches[0] if matches else None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (``X``, ``X | None``, ``list[X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType, list, tuple):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
