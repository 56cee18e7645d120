"""The run manifest: everything needed to say where a number came from."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from cvqa_bench.config import PROJECT_ROOT
from cvqa_bench.config.base import in_checkout

PACKAGES = ["cvqa-bench", "torch", "transformers", "peft", "accelerate", "tokenizers", "safetensors",
            "numpy", "scikit-learn", "pydantic", "pillow"]


def now() -> str:
    """UTC time in ISO 8601."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def git_commit(root: Path = PROJECT_ROOT) -> str | None:
    """The checked-out commit (``+dirty`` when tracked files changed), or None outside git. An installed wheel
    has none: the git repository around its site-packages, if any, is not the package's."""
    if root == PROJECT_ROOT and not in_checkout():
        return None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that change numbers."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_info() -> dict[str, Any]:
    """Platform, CPU count and accelerator of this process."""
    import os

    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def build_manifest(config: dict[str, Any], data: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """A fresh manifest: seeds, git commit, versions, device, data hashes, model source, start time."""
    return {
        "seed": config["seed"],
        "config": config,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "device": device_info(),
        "data": data,
        "model": model,
        "command": sys.argv,
        "started": now(),
        "finished": None,
    }


def read_manifest(path: Path) -> dict[str, Any]:
    """A run's manifest.json, parsed.

    Raises:
        ConfigError: it is damaged (what the run was made from can no longer be checked).
    """
    import json

    from cvqa_bench.config import ConfigError

    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        manifest = exc
    if not isinstance(manifest, dict):
        why = f"{type(manifest).__name__}" if isinstance(manifest, Exception) else "not a JSON object"
        raise ConfigError(f"{path}: damaged ({why}); what this run was made from (data, base model) cannot be "
                          "checked, so it cannot be resumed: start a new run with --out")
    return manifest


def check_same_model(path: Path, manifest: dict[str, Any], content_hash: str, source: str) -> None:
    """Refuse to resume a run on a base model other than the one it started with.

    Raises:
        ConfigError: the manifest's model content hash is absent (an older run) or differs, naming the model.
    """
    from cvqa_bench.config import ConfigError

    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    recorded = model.get("content_sha256")
    if recorded is None:
        raise ConfigError(f"{path}: this run was made before the base model was hashed by content, so {source} cannot "
                          "be shown to be the model it started with; start a new run with --out")
    if recorded != content_hash:
        raise ConfigError(f"{path}: cannot resume, the base model changed: {source} (content SHA-256 "
                          f"{content_hash[:12]}, the run started with {recorded[:12]}); start a new run with --out")
