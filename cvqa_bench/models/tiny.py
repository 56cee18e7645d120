"""Tiny offline checkpoints of every model family: built from ``configs/models/tiny*.yaml`` (``family:``, default
llava), saved once as a real HF folder (config.json, model.safetensors, a locally trained tokenizer with the
family's special tokens, preprocessor_config.json, the chat template).

Nothing here is used by training or evaluation directly: the tiny model is materialised into a cache
folder with ``save_pretrained`` and then loaded through the same ``from_pretrained`` path as a real
checkpoint (``cvqa_bench.models.load``), so no tiny-specific code leaks into the pipeline.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cvqa_bench.config import read_yaml
from cvqa_bench.config.base import cache_root as default_cache_root


def tiny_model_dir(config_path: str | Path, cache_root: Path | None = None) -> Path:
    """Build the tiny model described by ``config_path`` once and return its checkpoint folder."""
    config_path = Path(config_path)
    spec = read_yaml(config_path)
    corpus = _tokenizer_corpus()
    key = tiny_key(spec, corpus)
    root = cache_root or default_cache_root()
    target = root / "models" / f"tiny-{key}"
    if (target / "DONE").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model, processor_parts = build_tiny_model(spec, corpus)
        model.save_pretrained(tmp)
        for part in processor_parts:
            part.save_pretrained(tmp)
        (tmp / "DONE").write_text(key + "\n")
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first; its copy is identical
            if not (target / "DONE").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def tiny_key(spec: dict[str, Any], corpus: list[str]) -> str:
    """The cache folder's key of a tiny build: the preset's content, the tokenizer corpus, the transformers
    version and the source of the code that builds it (this module and every module of the family layer:
    a family imports helpers from the others), so that a changed preset or family module never reuses a
    stale build (a rebuild takes about a second)."""
    import transformers

    from cvqa_bench.models import families

    sources = [Path(__file__), *sorted(Path(families.__file__).parent.glob("*.py"))]
    code = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sources}
    record = [spec, corpus, transformers.__version__, code]
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]


def _tokenizer_corpus() -> list[str]:
    from cvqa_bench.data.synthetic import corpus

    return sorted(set(corpus())) + ["USER: ASSISTANT: A chat between a curious human and an assistant."]


def build_tiny_model(spec: dict[str, Any], corpus: list[str]) -> tuple[Any, list[Any]]:
    """A random-init model of the spec's family (``family:``, default ``llava``) and what saves its processor:
    HF's wrapper where it loads here, else the tokenizer (holding the chat template) and the image processor."""
    import torch

    from cvqa_bench.models.families import families

    family = families.get(spec.get("family", "llava"))
    tokenizer = train_tokenizer(family.tiny_tokens, spec["tokenizer"]["vocab_size"], corpus)
    image_processor = family.tiny_image_processor(spec)
    config = family.tiny_config(spec, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        model = family.new_model(config)
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id, gen.bos_token_id = (
        tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id
    )
    processor = family.tiny_processor(image_processor, tokenizer, family.tiny_chat_template, config)
    if processor is not None:
        return model, [processor]
    tokenizer.chat_template = family.tiny_chat_template
    return model, [tokenizer, image_processor]


def train_tokenizer(tokens: Any, vocab_size: int, corpus: list[str]) -> Any:
    """A byte-level BPE tokenizer trained on ``corpus`` with a family's special tokens (``TinyTokens``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = list(dict.fromkeys(t for t in (tokens.pad, tokens.bos, tokens.eos, tokens.unk, tokens.image,
                                              *tokens.extra) if t))
    tok = Tokenizer(models.BPE(unk_token=tokens.unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    if tokens.bos:  # LLaMA-style tokenizers start every text with BOS; Qwen-style ones add nothing
        tok.post_processor = processors.TemplateProcessing(single=f"{tokens.bos} $A",
                                                           special_tokens=[(tokens.bos, tok.token_to_id(tokens.bos))])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=tokens.bos, eos_token=tokens.eos, pad_token=tokens.pad, unk_token=tokens.unk,
        extra_special_tokens=[tokens.image, *tokens.extra], padding_side="left",
    )
