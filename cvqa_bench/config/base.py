"""What every config module shares: the project's folders, the config error, the strict base model."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
PROJECT_ROOT = PACKAGE_ROOT.parent
TASKS_DIR = PROJECT_ROOT / "tasks"
CONFIGS_DIR = PROJECT_ROOT / "configs"


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the field."""


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=False)
