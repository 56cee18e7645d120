"""``cvqa export``: one stage of a run as an HF model folder that ``from_pretrained`` loads offline (every family:
``AutoModelForImageTextToText``).

The stage's PEFT adapter (``run/state/adapters.py``) is applied to the run's base model with peft's own
``PeftModel.from_pretrained``. With ``merge`` the LoRA weights are merged in and the folder is a plain
checkpoint of the base model's class; without it the folder holds the base model and the adapter beside it
(``adapter_config.json`` names the folder itself as the base), which transformers' PEFT integration
attaches on ``AutoModelForImageTextToText.from_pretrained``. The base checkpoint's processor files (tokenizer,
image processor, chat template) are copied with it. A full-parameter run has no adapter: its trained tensors are written
into the base model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cvqa_bench.config import ConfigError, RunConfig, read_yaml, validate_model
from cvqa_bench.rundir import RunDir
from cvqa_bench.run.state.adapters import stage_adapter
from cvqa_bench.run.state.integrity import read_done, verify_stage
from cvqa_bench.scoring.cells import load_run_sequence

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def export_stage(run_dir: Path, stage: int, out: Path, *, merge: bool = False, task: str | None = None) -> Path:
    """Write stage ``stage`` (1-based) of ``run_dir`` as an HF checkpoint folder ``out``; ``task`` picks the adapter
    that task is evaluated with (LLaCA's groups). Checks everything before writing; returns ``out``."""
    run, out = RunDir(Path(run_dir)), Path(out)
    if not run.config.is_file():
        raise ConfigError(f"{run.config}: not found; {run.root} is not a run folder")
    config = validate_model(RunConfig, read_yaml(run.config), str(run.config))
    tasks = load_run_sequence(run).task_names()
    if not 1 <= stage <= len(tasks):
        raise ConfigError(f"--stage {stage}: {run.root} has stages 1..{len(tasks)} (stage 0 is the base model itself)")
    stage_dir = run.stage_dir(stage, tasks[stage - 1])
    record = read_done(stage_dir)
    if record is None:
        raise ConfigError(f"{stage_dir / 'DONE.json'}: not found; stage {stage} is not finished")
    verify_stage(stage_dir, record)  # a damaged stage is refused (StageDamaged, one line)
    adapter = stage_adapter(stage_dir, task)
    if config.model.lora is not None and not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter / 'adapter_config.json'}: not found; the stage has no PEFT adapter "
                                "(made before stages were saved in PEFT format, or by a method whose "
                                "own LoRA modules peft cannot hold: olora, moelora)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: exists and is not empty; choose a new folder")
    model, processor = _stage_model(config, stage_dir, adapter, merge)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # a failed export leaves no partial folder
    try:
        model.save_pretrained(str(tmp))
        if config.model.lora is not None and not merge:
            _place_adapter(adapter, tmp, base=out)
        processor.save_pretrained(str(tmp))
        if out.is_dir():
            out.rmdir()  # checked empty above
        tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _stage_model(config: RunConfig, stage_dir: Path, adapter: Path, merge: bool) -> tuple[Any, Any]:
    import transformers

    from cvqa_bench.models.inputs import ModelInputs
    from cvqa_bench.models.load import DTYPES, checked_family, model_directory
    from cvqa_bench.run.state.checkpoint import load_tensors

    base_dir = model_directory(config.model)
    family = checked_family(base_dir)
    processor = ModelInputs.from_pretrained(base_dir, family)
    model = getattr(transformers, family.model_class).from_pretrained(base_dir, dtype=DTYPES[config.model.dtype],
                                                                      local_files_only=True)
    if config.model.lora is None:  # full-parameter training: the trained tensors carry the model's own names
        missing = set(load_tensors(stage_dir / "weights.safetensors")) - set(model.state_dict())
        if missing:
            raise ConfigError(f"{stage_dir / 'weights.safetensors'}: tensors the model lacks, e.g. {sorted(missing)[0]!r}")
        model.load_state_dict(load_tensors(stage_dir / "weights.safetensors"), strict=False)
        return model, processor
    if not merge:  # the base as it is; the adapter goes beside it
        return model, processor
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter), is_trainable=False).merge_and_unload(), processor


def _place_adapter(adapter: Path, out: Path, base: Path) -> None:
    """Copy the adapter files into ``out``, naming ``base`` (the folder ``out`` becomes) as their base model."""
    for name in ADAPTER_FILES:
        shutil.copyfile(adapter / name, out / name)
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(base.resolve())
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
