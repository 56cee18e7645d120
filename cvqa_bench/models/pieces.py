"""The three published pieces of the CoIN base model, checked and loaded one by one, offline.

Each loader turns every way a piece can be wrong (missing folder, wrong ``model_type``, no weights,
unreadable projector, mis-shaped tensors) into one :class:`AssembleError` line naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cvqa_bench.config import ConfigError

# mm_projector.bin key (LLaVA's nn.Sequential(Linear, GELU, Linear)) -> llava-hf projector key
PROJECTOR_KEYS = {
    "model.mm_projector.0.weight": "linear_1.weight",
    "model.mm_projector.0.bias": "linear_1.bias",
    "model.mm_projector.2.weight": "linear_2.weight",
    "model.mm_projector.2.bias": "linear_2.bias",
}
LLM_TYPES = ("llama",)
VISION_TYPES = ("clip", "clip_vision_model")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model*.bin")


class AssembleError(ConfigError):
    """An input that cannot be assembled; the one-line message names the file or folder."""


def check_model_dir(path: Path, role: str, model_types: tuple[str, ...], extra: tuple[str, ...]) -> dict[str, Any]:
    """Check a local model folder: config.json of an accepted ``model_type``, weights, and one of ``extra``.

    Returns the parsed config.json.

    Raises:
        AssembleError: naming the folder or the file that is missing or wrong.
    """
    if not path.is_dir():
        raise AssembleError(f"{path}: {role} folder not found")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise AssembleError(f"{config_path}: missing; the {role} folder must hold a Hugging Face config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AssembleError(f"{config_path}: not readable JSON ({first_line(exc)})") from exc
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in model_types:
        raise AssembleError(f"{config_path}: model_type {model_type!r}, expected "
                            f"{' or '.join(repr(t) for t in model_types)} for the {role} folder")
    if not any(any(path.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        raise AssembleError(f"{path}: no weights (*.safetensors or pytorch_model*.bin) in the {role} folder")
    if not any((path / name).is_file() for name in extra):
        raise AssembleError(f"{path}: the {role} folder needs {' or '.join(extra)}")
    return config


def load_projector(path: str | Path) -> dict[str, Any]:
    """The four tensors of a LLaVA-1.5 ``mm_projector.bin``, by their original key names (safe load).

    Raises:
        AssembleError: missing or unreadable file, not a state dict, or keys other than the expected four.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise AssembleError(f"{path}: projector file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike for a bad file
        raise AssembleError(f"{path}: cannot be read as a torch state dict ({first_line(exc)})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AssembleError(f"{path}: expected a dict of tensors (a projector state dict), got {type(state).__name__}")
    missing = sorted(set(PROJECTOR_KEYS) - set(state))
    unexpected = sorted(set(state) - set(PROJECTOR_KEYS))
    if missing or unexpected:
        raise AssembleError(f"{path}: not a 2-layer mm_projector state dict: missing {missing}, "
                            f"unexpected {unexpected[:4]}{' ...' if len(unexpected) > 4 else ''}")
    return state


def check_projector_shapes(state: dict[str, Any], vision_hidden: int, text_hidden: int, path: str | Path) -> None:
    """The projector must map the vision hidden size to the LLM hidden size (then LLM → LLM).

    Raises:
        AssembleError: naming the first tensor whose shape does not fit.
    """
    expected = {
        "model.mm_projector.0.weight": (text_hidden, vision_hidden),
        "model.mm_projector.0.bias": (text_hidden,),
        "model.mm_projector.2.weight": (text_hidden, text_hidden),
        "model.mm_projector.2.bias": (text_hidden,),
    }
    for key, shape in expected.items():
        got = tuple(state[key].shape)
        if got != shape:
            raise AssembleError(f"{path}: {key} has shape {list(got)}, expected {list(shape)} for a vision tower "
                                f"of hidden size {vision_hidden} and an LLM of hidden size {text_hidden}")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_tokenizer(llm_dir: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        # padding_side as a load argument, so that save_pretrained writes it (vicuna's file says "right")
        tokenizer = AutoTokenizer.from_pretrained(llm_dir, local_files_only=True, padding_side="left")
    except (ImportError, OSError, ValueError, TypeError) as exc:
        hint = "" if (llm_dir / "tokenizer.json").is_file() else (
            "; converting tokenizer.model needs `pip install sentencepiece protobuf`")
        raise AssembleError(f"{llm_dir}: cannot load the tokenizer ({first_line(exc)}){hint}") from exc
    if tokenizer.eos_token is None or tokenizer.bos_token is None:
        raise AssembleError(f"{llm_dir}: the tokenizer has no bos/eos token; expected a Llama tokenizer (<s>, </s>)")
    return tokenizer


def load_pretrained(class_name: str, path: Path, torch_dtype: Any) -> Any:
    import transformers

    cls = getattr(transformers, class_name)
    verbosity = transformers.logging.get_verbosity()
    # The load report lists a CLIPModel's text tower as unexpected keys (normal, and long); the
    # keys that matter are checked below.
    transformers.logging.set_verbosity_error()
    try:
        model, info = cls.from_pretrained(path, dtype=torch_dtype, local_files_only=True, output_loading_info=True)
    except Exception as exc:  # corrupt shards surface as pickle, safetensors, OS or runtime errors
        raise AssembleError(f"{path}: cannot load as {class_name} ({first_line(exc)})") from exc
    finally:
        transformers.logging.set_verbosity(verbosity)
    # Unexpected keys are normal (a CLIPModel checkpoint also holds the text tower); missing or
    # mis-shaped ones mean random weights would be assembled silently.
    mismatched = [k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys", [])]
    problems = [*info.get("missing_keys", []), *mismatched]
    if problems:
        raise AssembleError(f"{path}: {len(problems)} {class_name} weights missing or of the wrong shape, "
                            f"e.g. {sorted(problems)[0]!r}")
    return model


def load_image_processor(vision_dir: Path, image_size: int) -> Any:
    from transformers import CLIPImageProcessorPil  # the PIL backend: torchvision must not be needed

    path = vision_dir / "preprocessor_config.json"
    try:
        processor = CLIPImageProcessorPil.from_pretrained(vision_dir, local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise AssembleError(f"{path}: cannot load a CLIP image processor ({first_line(exc)})") from exc
    crop = processor.crop_size if processor.do_center_crop else None
    height, width = (getattr(crop, "height", None), getattr(crop, "width", None))
    if (height, width) != (image_size, image_size):
        raise AssembleError(f"{path}: crop_size {height}x{width} does not match the vision tower's image_size "
                            f"{image_size}; the image-token count would not match")
    return processor
