"""The tiny offline LLaVA: built from ``configs/models/tiny.yaml``, saved once as a llava-hf directory.

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

# The LLaVA-1.5 conversation ("USER: <image>\n{q} ASSISTANT: {a}</s>"), as a chat template, because a
# locally built tokenizer has none. A rendered assistant turn extends the generation prompt exactly.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>\n{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %} "
    "{% else %}ASSISTANT: {% for item in message['content'] %}{{ item['text'] }}{% endfor %}</s>"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]


def tiny_model_dir(config_path: str | Path, cache_root: Path | None = None) -> Path:
    """Build the tiny model described by ``config_path`` once and return its llava-hf directory."""
    config_path = Path(config_path)
    spec = read_yaml(config_path)
    corpus = _tokenizer_corpus()
    key = hashlib.sha256(json.dumps([spec, corpus], sort_keys=True).encode()).hexdigest()[:12]
    root = cache_root or default_cache_root()
    target = root / "models" / f"tiny-{key}"
    if (target / "DONE").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model, processor = build_tiny_model(spec, corpus)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "DONE").write_text(key + "\n")
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first; its copy is identical
            if not (target / "DONE").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _tokenizer_corpus() -> list[str]:
    from cvqa_bench.data.synthetic import corpus

    return sorted(set(corpus())) + ["USER: ASSISTANT: A chat between a curious human and an assistant."]


def build_tiny_model(spec: dict[str, Any], corpus: list[str]) -> tuple[Any, Any]:
    """A random-init ``LlavaForConditionalGeneration`` and its ``LlavaProcessor`` from a tiny spec."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec["tokenizer"]["vocab_size"], show_progress=False, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        extra_special_tokens=["<image>"], padding_side="left",
    )
    size = spec["image_size"]
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=spec["patch_size"],
        vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
    )
    vision = CLIPVisionConfig(image_size=size, patch_size=spec["patch_size"], **spec["vision"])
    text = LlamaConfig(
        vocab_size=len(tokenizer), num_key_value_heads=spec["text"]["num_attention_heads"],
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, **spec["text"],
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=processor.image_token_id,
        image_seq_length=(size // spec["patch_size"]) ** 2, vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        model = LlavaForConditionalGeneration(config)
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id, gen.bos_token_id = (
        tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id
    )
    return model, processor
