"""Tiny stand-ins with the exact structure of the real CoIN inputs (not a test module).

Nothing on these machines can download vicuna-7b-v1.5, CLIP ViT-L/14-336, the LLaVA-1.5 projector or
the CoIN data, so the real path is proven on small files saved in the same layouts:

- :func:`build_llm_standin`: a Llama-format LLM folder (``LlamaForCausalLM`` weights as safetensors,
  or as vicuna ships them, ``pytorch_model-0000k-of-0000n.bin`` shards + index) with a Llama tokenizer
  (Metaspace BPE with byte fallback, ``<unk>``/``<s>``/``</s>`` = 0/1/2, BOS added, no pad token);
- :func:`build_clip_standin`: a CLIP folder (``CLIPModel`` with both towers, like
  openai/clip-vit-large-patch14-336, or a bare ``CLIPVisionModel``) with that model's legacy
  ``preprocessor_config.json`` (ints for ``size``/``crop_size``, ``CLIPFeatureExtractor``);
- :func:`write_projector`: ``mm_projector.bin`` written with ``torch.save`` under the original keys;
- :func:`build_coin_root`: a CoIN data root with all eight task folders in the official layout;
- :func:`build_tiny_llava`: a tiny llava-hf checkpoint (the project's tiny model, vicuna_v1 template).
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------- the CoIN data root

SQA = "Answer with the option's letter from the given choices directly."
VQA = "Answer the question using a single word or phrase."
VIZWIZ = "When the provided information is insufficient, respond with 'Unanswerable'."
GROUNDING = "Please provide the bounding box coordinate of the region this sentence describes"
IMAGENET_Q = "What is the object in the image?"
TASKS = ("ScienceQA", "TextVQA", "ImageNet", "GQA", "VizWiz", "Grounding", "VQAv2", "OCRVQA")
VAL_TASKS = ("TextVQA", "VizWiz", "VQAv2")  # evaluated on val.json, 10 answers per question


def _turns(*values: str) -> list[dict[str, str]]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]


def _train_rows(task: str) -> list[dict[str, Any]]:
    """Four CoIN-format training rows of ``task`` (prompts as in the CoIN instruction files)."""
    if task == "ScienceQA":
        rows = [
            {"id": "sqa-1", "image": "ScienceQA/train/1/image.png", "conversations": _turns(
                f"<image>\nContext: The map shows four states.\nWhich of these states is farthest north?\n"
                f"A. West Virginia\nB. Louisiana\nC. Arizona\nD. Oklahoma\n{SQA}", "A")},
            # ScienceQA has text-only questions: no image key at all
            {"id": "sqa-2", "conversations": _turns(
                f"Which word would you find on a dictionary page with the guide words helmet - hunt?\n"
                f"A. hospital\nB. hardship\n{SQA}", "A")},
            {"id": "sqa-3", "image": "ScienceQA/train/3/image.png", "conversations": _turns(
                f"<image>\nWhich animal's feet are also adapted for sticky surfaces?\nA. tree frog\nB. hoatzin\n{SQA}",
                "A")},
            {"id": "sqa-4", "image": "ScienceQA/train/4/image.png", "conversations": _turns(
                f"<image>\nWhat is the capital of Utah?\nA. Salt Lake City\nB. Provo\nC. Denver\n{SQA}", "A")},
        ]
        return rows
    if task == "ImageNet":
        labels = ["tench", "goldfish", "great white shark", "tiger shark"]
        return [{"id": f"imn-{i}", "image": f"ImageNet/train/n0144{i}/n0144{i}_100{i}.JPEG",
                 "conversations": _turns(f"<image>\n{IMAGENET_Q}\n{VQA}", label)} for i, label in enumerate(labels)]
    if task == "Grounding":
        refs = [("woman in red shirt", "[0.16, 0.28, 0.52, 0.94]"), ("man on the left", "[0.05, 0.2, 0.42, 0.88]"),
                ("white car", "[0.5, 0.51, 0.98, 0.8]"), ("dog lying down", "[0.31, 0.62, 0.7, 0.9]")]
        return [{"id": f"ref-{i}", "image": f"COCO2014/train2014/COCO_train2014_00000058185{i}.jpg",
                 "conversations": _turns(f"<image>\n{GROUNDING}: {ref}.", box)} for i, (ref, box) in enumerate(refs)]
    if task == "OCRVQA":
        # OCR-VQA rows hold several question/answer turns about one book cover
        return [{"id": f"ocr-{i}", "image": f"OCR-VQA/images/14003199{i}.jpg", "conversations": _turns(
            f"<image>\nWho wrote this book?\n{VQA}", author, f"What is the title of this book?\n{VQA}", title,
            f"Is this a romantic book?\n{VQA}", romantic)}
            for i, (author, title, romantic) in enumerate(
                [("Jane Austen", "Emma", "Yes"), ("Mary Shelley", "Frankenstein", "No"),
                 ("Leo Tolstoy", "War and Peace", "No"), ("Emily Bronte", "Wuthering Heights", "Yes")])]
    questions = {
        "TextVQA": [("what is the brand of this camera?", "dakota"), ("what number is on the player's jersey?", "22"),
                    ("what does the sign say?", "stop"), ("what time is it?", "10:10")],
        "GQA": [("Is the sky blue or white?", "blue"), ("Which side is the cup on?", "left"),
                ("What is the man holding?", "umbrella"), ("Are there both cars and buses?", "no")],
        "VizWiz": [(f"What is this?\n{VIZWIZ}", "unanswerable"), (f"What color is this shirt?\n{VIZWIZ}", "blue"),
                   (f"What kind of soup is this?\n{VIZWIZ}", "tomato"), (f"Is this milk?\n{VIZWIZ}", "yes")],
        "VQAv2": [("What color is the bus?", "red"), ("How many people are there?", "2"),
                  ("Is it raining?", "no"), ("What sport is this?", "tennis")],
    }[task]
    folder = {"TextVQA": "TextVQA/train_images/0054c91397f2fe0{}.jpg", "GQA": "GQA/images/235478{}.jpg",
              "VizWiz": "VizWiz/train/VizWiz_train_0000000{}.jpg",
              "VQAv2": "COCO2014/train2014/COCO_train2014_00000000000{}.jpg"}[task]
    return [{"id": f"{task.lower()}-{i}", "image": folder.format(i), "conversations": _turns(f"<image>\n{q}\n{VQA}", a)}
            for i, (q, a) in enumerate(questions)]


def _ten(first: str, other: str) -> list[str]:
    """Ten human answers: ``first`` seven times, ``other`` three times (VQA annotation style)."""
    return [first] * 7 + [other] * 3


def _test_rows(task: str) -> list[dict[str, Any]]:
    """Four CoIN-format evaluation rows of ``task`` (test.json, or val.json with 10 answers)."""
    if task == "ScienceQA":
        return [
            {"question_id": "sqa-t1", "image": "ScienceQA/test/5/image.png",
             "text": f"Which of these states is farthest west?\nA. Ohio\nB. Nevada\n{SQA}", "answer": "B"},
            {"question_id": "sqa-t2", "text": f"Which word is a noun?\nA. run\nB. table\n{SQA}", "answer": "B"},
            {"question_id": "sqa-t3", "image": "ScienceQA/test/7/image.png",
             "text": f"Context: Look at the picture.\nWhich is smoother?\nA. silk\nB. bark\n{SQA}", "answer": "A"},
            {"question_id": "sqa-t4", "image": "ScienceQA/test/8/image.png",
             "text": f"Which animal is a mammal?\nA. shark\nB. whale\nC. trout\n{SQA}", "answer": "B"},
        ]
    if task == "ImageNet":
        return [{"question_id": f"imn-t{i}", "image": f"ImageNet/val/n0144{i}/ILSVRC2012_val_0000000{i}.JPEG",
                 "text": f"{IMAGENET_Q}\n{VQA}", "answer": label}
                for i, label in enumerate(["goldfish", "tench", "tiger shark", "hammerhead"])]
    if task == "Grounding":
        boxes = [("man on the left", [0.05, 0.2, 0.42, 0.88], [640, 427]),
                 ("woman in red shirt", [0.16, 0.28, 0.52, 0.94], [480, 640]),
                 ("white car", [0.5, 0.51, 0.98, 0.8], [640, 480]), ("red umbrella", [0.1, 0.1, 0.3, 0.4], [500, 500])]
        return [{"question_id": f"ref-t{i}", "image": f"COCO2014/train2014/COCO_train2014_00000058286{i}.jpg",
                 # CoIN stores the box as a string too (its eval_grounding.py parses answer_bbox as text)
                 "text": f"{GROUNDING}: {ref}.", "answer": json.dumps(box),
                 "answer_bbox": json.dumps(box), "size": size} for i, (ref, box, size) in enumerate(boxes)]
    if task == "TextVQA":
        items = [("what brand is the phone?", _ten("nokia", "nokia phone")),
                 ("what year is on the coin?", _ten("1984", "84")),
                 ("what is the name of the store?", _ten("target", "Target")),
                 ("what is written on the cup?", _ten("coffee", "cafe"))]
        return [{"question_id": 34602 + i, "image": f"TextVQA/train_images/1a2b3c4d5e6f700{i}.jpg",
                 "text": f"{q}\nReference OCR token: {a[0]}, sale\n{VQA}", "answers": a}
                for i, (q, a) in enumerate(items)]
    if task == "VizWiz":
        items = [("What is this?", _ten("unanswerable", "unsuitable")), ("What color is this?", _ten("blue", "navy")),
                 ("What does this say?", _ten("salt", "sea salt")), ("Is this a can?", _ten("yes", "no"))]
        return [{"question_id": f"VizWiz_val_0000000{i}.jpg", "image": f"VizWiz/val/VizWiz_val_0000000{i}.jpg",
                 "text": f"{q}\n{VIZWIZ}\n{VQA}", "answers": a} for i, (q, a) in enumerate(items)]
    if task == "VQAv2":
        items = [("What color is the cat?", _ten("black", "black and white")), ("How many dogs?", _ten("2", "two")),
                 ("Is the man smiling?", _ten("yes", "no")), ("What is on the plate?", _ten("pizza", "food"))]
        return [{"question_id": 262148000 + i, "image": f"COCO2014/val2014/COCO_val2014_00000000004{i}.jpg",
                 "text": f"{q}\n{VQA}", "answers": a} for i, (q, a) in enumerate(items)]
    items = {"GQA": [("Is the sky dark?", "yes"), ("What is the woman wearing?", "dress"),
                     ("Which color is the car?", "white"), ("Is there a fence?", "no")],
             "OCRVQA": [("What is the genre of this book?", "Romance"), ("Who wrote this book?", "Jane Austen"),
                        ("Is this a comedy book?", "No"), ("What is the title of this book?", "Emma")]}[task]
    image = {"GQA": "GQA/images/n16105{}.jpg", "OCRVQA": "OCR-VQA/images/06794009{}.jpg"}[task]
    return [{"question_id": f"{task.lower()}-t{i}", "image": image.format(i), "text": f"{q}\n{VQA}", "answer": a}
            for i, (q, a) in enumerate(items)]


def build_coin_root(root: Path, instructions: str = "Instructions") -> Path:
    """Write a CoIN data root: ``playground/<instructions>/<Task>/{train,test[,val]}.json`` and images.

    Images are small RGB files under ``cl_dataset/`` (JPEG for ``.jpg``/``.JPEG`` paths, PNG else),
    of several aspect ratios so padding to a square matters. Returns ``root``.
    """
    from PIL import Image

    root = Path(root)
    images: set[str] = set()
    for task in TASKS:
        folder = root / "playground" / instructions / task
        folder.mkdir(parents=True, exist_ok=True)
        train, test = _train_rows(task), _test_rows(task)
        (folder / "train.json").write_text(json.dumps(train, indent=1))
        if task == "TextVQA":
            # CoIN's TextVQA val.json carries one `answer`; the 10 answers are in the official annotations
            # (cl_dataset/TextVQA/TextVQA_0.5.1_val.json, {"data": [{question_id, answers, ...}]}), which
            # the sequence names as the task's answers_file.
            official = root / "cl_dataset" / "TextVQA" / "TextVQA_0.5.1_val.json"
            official.parent.mkdir(parents=True, exist_ok=True)
            official.write_text(json.dumps({"dataset_name": "textvqa", "data": [
                {"question_id": r["question_id"], "image_id": Path(r["image"]).stem, "answers": r["answers"]}
                for r in test]}, indent=1))
            one = [{k: v for k, v in r.items() if k != "answers"} | {"answer": r["answers"][0]} for r in test]
            (folder / "val.json").write_text(json.dumps(one, indent=1))
            (folder / "test.json").write_text(json.dumps(one, indent=1))
        elif task in VAL_TASKS:
            (folder / "val.json").write_text(json.dumps(test, indent=1))
            # the official folders also hold a test.json with one `answer` (not what CoIN evaluates)
            one = [{k: v for k, v in r.items() if k != "answers"} | {"answer": r["answers"][0]} for r in test]
            (folder / "test.json").write_text(json.dumps(one, indent=1))
        else:
            (folder / "test.json").write_text(json.dumps(test, indent=1))
        images.update(r["image"] for r in [*train, *test] if r.get("image"))
    for i, rel in enumerate(sorted(images)):
        path = root / "cl_dataset" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        size = [(48, 32), (32, 48), (40, 40), (64, 24)][i % 4]
        image = Image.new("RGB", size, ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256))
        image.save(path, format="JPEG" if path.suffix.lower() in {".jpg", ".jpeg"} else "PNG")
    return root


def coin_corpus() -> list[str]:
    """Every prompt and answer text of the stand-in data root, plus the vicuna_v1 system line."""
    from cvqa_bench.models.conversation import VICUNA_V1_SYSTEM

    texts = [VICUNA_V1_SYSTEM, "USER: ASSISTANT:", string.ascii_letters + string.digits + string.punctuation]
    for task in TASKS:
        texts += [t["value"] for r in _train_rows(task) for t in r["conversations"]]
        for r in _test_rows(task):
            texts += [r["text"], *r.get("answers", [r.get("answer", "")])]
    return texts


# ---------------------------------------------------------------- the three published pieces


def llama_tokenizer(corpus: list[str], vocab_size: int = 400) -> Any:
    """A ``LlamaTokenizer`` with vicuna's structure, trained on ``corpus`` (BOS added, no pad token)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizer

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    # Llama's first ids: <unk> <s> </s>, then the 256 byte-fallback pieces <0x00>..<0xFF>
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=list(string.ascii_letters + string.digits + "▁"))
    tok.train_from_iterator(corpus, trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return LlamaTokenizer(vocab=model["vocab"], merges=merges, add_bos_token=True, legacy=False)


def build_llm_standin(folder: Path, *, layout: str = "safetensors", seed: int = 1) -> Any:
    """Save a tiny ``LlamaForCausalLM`` + Llama tokenizer in vicuna-7b-v1.5's layout; returns the model.

    ``layout="bin"`` writes ``pytorch_model-0000k-of-00002.bin`` shards and ``pytorch_model.bin.index.json``
    with ``torch.save`` (how vicuna-7b-v1.5 is published); ``"safetensors"`` uses ``save_pretrained``.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    tokenizer = llama_tokenizer(coin_corpus())
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.1)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    if layout == "safetensors":
        model.save_pretrained(folder)
    elif layout == "bin":
        folder.mkdir(parents=True, exist_ok=True)
        config.architectures = ["LlamaForCausalLM"]
        config.save_pretrained(folder)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        names = sorted(state)
        shards = [names[: len(names) // 2], names[len(names) // 2:]]
        weight_map = {}
        for i, keys in enumerate(shards, start=1):
            shard = f"pytorch_model-{i:05d}-of-{len(shards):05d}.bin"
            torch.save({k: state[k] for k in keys}, folder / shard)
            weight_map.update({k: shard for k in keys})
        total = sum(t.numel() * t.element_size() for t in state.values())
        (folder / "pytorch_model.bin.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    else:
        raise ValueError(f"unknown layout {layout!r}")
    # vicuna's generation_config.json asks for sampling; the assembled model must not inherit it
    GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0, do_sample=True, temperature=0.9,
                     top_p=0.6, max_length=512).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def build_clip_standin(folder: Path, *, full: bool = True, image_size: int = 32, patch_size: int = 8,
                       hidden_size: int = 24, seed: int = 2) -> Any:
    """Save a tiny CLIP (``CLIPModel`` if ``full`` else ``CLIPVisionModel``) + its legacy preprocessor config.

    Returns the saved model's vision tower (a ``CLIPVisionModel`` or ``CLIPModel.vision_model``).
    """
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel

    folder = Path(folder)
    vision = dict(image_size=image_size, patch_size=patch_size, hidden_size=hidden_size,
                  intermediate_size=2 * hidden_size, num_hidden_layers=3, num_attention_heads=2)
    torch.manual_seed(seed)
    if full:
        text = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                    num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                    pad_token_id=1)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8))
        tower = model.vision_model
    else:
        model = CLIPVisionModel(CLIPVisionConfig(**vision))
        tower = model
    model.save_pretrained(folder)
    # openai/clip-vit-large-patch14-336's file, scaled down: ints for size/crop_size, bicubic (3)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": image_size, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
        "resample": 3, "size": image_size,
    }, indent=2))
    return tower


def write_projector(path: Path, vision_hidden: int, text_hidden: int, seed: int = 3) -> dict[str, Any]:
    """``torch.save`` a LLaVA-1.5 stage-1 projector state dict under the original key names; returns it."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    state = {
        "model.mm_projector.0.weight": torch.randn(text_hidden, vision_hidden, generator=gen) * 0.1,
        "model.mm_projector.0.bias": torch.randn(text_hidden, generator=gen) * 0.1,
        "model.mm_projector.2.weight": torch.randn(text_hidden, text_hidden, generator=gen) * 0.1,
        "model.mm_projector.2.bias": torch.randn(text_hidden, generator=gen) * 0.1,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


# ---------------------------------------------------------------- a tiny llava-hf checkpoint


def build_tiny_llava(folder: Path) -> Path:
    """The project's tiny LLaVA (configs/models/tiny.yaml), tokenizer trained on the CoIN stand-in
    texts, with the vicuna_v1 chat template, saved with ``save_pretrained``; returns ``folder``."""
    from cvqa_bench.config import CONFIGS_DIR, read_yaml
    from cvqa_bench.models.conversation import VICUNA_V1_CHAT_TEMPLATE
    from cvqa_bench.models.tiny import build_tiny_model

    spec = read_yaml(CONFIGS_DIR / "models" / "tiny.yaml")
    model, savers = build_tiny_model(spec, coin_corpus())  # the llava family: [its processor]
    savers[0].chat_template = VICUNA_V1_CHAT_TEMPLATE
    model.save_pretrained(folder)
    for saver in savers:
        saver.save_pretrained(folder)
    return Path(folder)
