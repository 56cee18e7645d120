"""What every config module shares: the project's folders, the config error, the strict base model.

The built-in sequences (``tasks/*.yaml``) and presets (``configs/**``) are package data in
``cvqa_bench/builtin/``; the repository's ``tasks/`` and ``configs/`` are links to those folders, so
git holds one copy of each file. A checkout's own folders take precedence over the installed ones.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
PROJECT_ROOT = PACKAGE_ROOT.parent


def builtin_dir(name: str) -> Path:
    """``tasks`` or ``configs``: the checkout's folder when there is one, else the installed package data."""
    local = PROJECT_ROOT / name
    if local.is_dir():
        return local
    return Path(str(resources.files("cvqa_bench") / "builtin" / name))  # a file-system install (not a zip)


TASKS_DIR = builtin_dir("tasks")
CONFIGS_DIR = builtin_dir("configs")


def project_path(relative: str | Path) -> Path:
    """A repository-relative path such as ``configs/models/tiny.yaml``: in the checkout, else in the
    built-in package data (an installed wheel has no checkout)."""
    relative = Path(relative)
    if (PROJECT_ROOT / relative).exists() or relative.parts[0] not in ("tasks", "configs"):
        return PROJECT_ROOT / relative
    return builtin_dir(relative.parts[0]).joinpath(*relative.parts[1:])


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
