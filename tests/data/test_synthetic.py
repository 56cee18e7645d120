"""The synthetic generator: determinism, CoIN formats, labels checked by non-learned features, caching."""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvqa_bench.config import GeneratorSpec, SequenceSpec, load_sequence
from cvqa_bench.data import sources
from cvqa_bench.data.coin import load_task
from cvqa_bench.data.synthetic import SKILLS, corpus, generate

TASKS = ["mcq", "color", "shape", "count", "position", "glyph"]
GREY = (128, 128, 128)
SHORT = "Answer the question using a single word or phrase."
# Written by hand, independent of the generator's palette: the label must be the nearest of these.
PROTOTYPES = {
    "red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
    "orange": (255, 140, 0), "purple": (128, 0, 128), "white": (255, 255, 255), "black": (0, 0, 0),
}


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def seq_spec(spec: GeneratorSpec, tasks: list[str] = TASKS) -> SequenceSpec:
    scorers = {"mcq": "choice", "color": "vqa", "shape": "contains", "count": "exact", "position": "grounding",
               "glyph": "exact"}
    return SequenceSpec(name="synth", generator=spec, tasks=[
        {"name": t, "train": f"{t}/train.json", "test": f"{t}/test.json", "scorer": scorers[t],
         "instruction": "last_line_before_colon" if t == "position" else "last_line"} for t in tasks])


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Generate once (48 train / 16 test per task) and load through the CoIN loader with image checks."""
    out = tmp_path_factory.mktemp("synth")
    spec = GeneratorSpec(seed=0, n_train=48, n_test=16, image_size=32)
    generate(spec, out, TASKS)
    seq = seq_spec(spec)
    return {t.name: load_task(t, out, out / "images") for t in seq.tasks}


def mask(path: str) -> np.ndarray:
    pixels = np.asarray(Image.open(path).convert("RGB"))
    return (pixels != np.array(GREY)).any(axis=-1)


def crop(m: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(m)
    return m[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def nearest_colour(path: str) -> str:
    pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(float)
    fg = pixels[(pixels != np.array(GREY)).any(axis=-1)]
    mean = fg.mean(axis=0)
    return min(PROTOTYPES, key=lambda name: float(((mean - np.array(PROTOTYPES[name])) ** 2).sum()))


def components(m: np.ndarray) -> int:
    """Number of 4-connected foreground regions (plain flood fill)."""
    seen = np.zeros_like(m)
    count = 0
    for start in zip(*np.nonzero(m)):
        if seen[start]:
            continue
        count += 1
        stack = [start]
        while stack:
            y, x = stack.pop()
            if not (0 <= y < m.shape[0] and 0 <= x < m.shape[1]) or seen[y, x] or not m[y, x]:
                continue
            seen[y, x] = True
            stack += [(y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)]
    return count


def answer_of(row: dict) -> str:
    return row["conversations"][1]["value"]


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    spec = GeneratorSpec(seed=3, n_train=6, n_test=3, image_size=32)
    generate(spec, tmp_path / "a", TASKS)
    generate(spec, tmp_path / "b", TASKS)
    generate(spec.model_copy(update={"seed": 4}), tmp_path / "c", TASKS)
    a, b, c = (tree_bytes(tmp_path / x) for x in "abc")
    assert len(a) == 6 * 2 + 6 * 9  # two JSON files and 6 + 3 images per task
    assert a == b
    assert a.keys() == c.keys()
    for task in TASKS:
        task_files = [k for k in a if k.startswith(f"{task}/") or k.startswith(f"images/{task}/")]
        assert any(a[k] != c[k] for k in task_files), task


def test_task_files_do_not_depend_on_the_other_tasks(tmp_path: Path) -> None:
    spec = GeneratorSpec(seed=0, n_train=5, n_test=2)
    generate(spec, tmp_path / "all", TASKS)
    generate(spec, tmp_path / "one", ["glyph"])
    every, alone = tree_bytes(tmp_path / "all"), tree_bytes(tmp_path / "one")
    assert alone == {k: v for k, v in every.items() if "glyph/" in k}


def test_layout_and_formats(data: dict) -> None:
    for task, td in data.items():
        assert len(td.train) == 48 and len(td.test) == 16
        for i, row in enumerate(td.train):
            assert row["id"] == f"{task}_train_{i}"
            assert row["image"].endswith(f"images/{task}/train_{i}.png")
            assert row["conversations"][0]["value"].startswith("<image>\n")
            assert [t["from"] for t in row["conversations"]] == ["human", "gpt"]
        for row in td.train + td.test:
            with Image.open(row["image"]) as image:
                assert image.size == (32, 32) and image.mode == "RGB"
        for row in td.test:
            assert "<image>" not in row["text"]
            expected = 10 if task == "color" else 1
            assert len(row["answers"]) == expected and all(isinstance(a, str) for a in row["answers"])


def test_raw_test_json_fields(tmp_path: Path) -> None:
    generate(GeneratorSpec(n_train=1, n_test=4), tmp_path, ["color", "position", "count"])
    color = json.loads((tmp_path / "color" / "test.json").read_text())
    assert all(set(r) == {"question_id", "image", "text", "answers"} for r in color)
    position = json.loads((tmp_path / "position" / "test.json").read_text())
    assert all(set(r) == {"question_id", "image", "text", "answer", "answer_bbox", "size"} for r in position)
    count = json.loads((tmp_path / "count" / "test.json").read_text())
    assert all(set(r) == {"question_id", "image", "text", "answer"} for r in count)
    assert color[0]["image"] == "color/test_0.png"  # relative to the image folder


def test_instruction_strings_per_task(data: dict) -> None:
    assert {t: td.instructions for t, td in data.items()} == {
        "mcq": ("Answer with the option's letter from the given choices directly.",),
        "color": (SHORT,),
        "shape": ("Name the object category in one word.",),
        "count": (SHORT,),
        "position": ("Please provide the bounding box coordinate of the region this sentence describes",),
        "glyph": (SHORT,),
    }
    assert data["color"].train[0]["conversations"][0]["value"] == f"<image>\nWhat color is the shape?\n{SHORT}"


def test_labels_are_balanced(data: dict) -> None:
    counts = Counter(answer_of(r) for r in data["color"].train)  # 48 rows over 8 colours
    assert sorted(counts.values()) == [6] * 8
    counts = Counter(r["answers"][0] for r in data["count"].test)  # 16 rows over 3 classes
    assert sorted(counts.values()) == [5, 5, 6]


def test_mcq_letter_names_the_drawn_colour(data: dict) -> None:
    prompt = data["mcq"].train[0]["conversations"][0]["value"]
    assert prompt == ("<image>\nWhat color is the shape?\nA. red\nB. green\nC. blue\nD. yellow\n"
                      "Answer with the option's letter from the given choices directly.")
    options = {"A": "red", "B": "green", "C": "blue", "D": "yellow"}
    for row in data["mcq"].train:
        assert nearest_colour(row["image"]) == options[answer_of(row)]
    assert {answer_of(r) for r in data["mcq"].train} == set("ABCD")


def test_color_label_is_the_mean_foreground_colour(data: dict) -> None:
    for row in data["color"].train:
        assert nearest_colour(row["image"]) == answer_of(row)
    disagreements = 0
    for row in data["color"].test:
        truth = nearest_colour(row["image"])
        assert row["answers"].count(truth) >= 9  # human-like: at most one neighbouring word
        disagreements += row["answers"].count(truth) == 9
    assert 0 < disagreements < len(data["color"].test)  # some, not all, have a dissenting annotator


def test_shape_label_matches_fill_ratio_of_its_box(data: dict) -> None:
    # Filled fraction of the bounding box: square 1, circle pi/4, triangle 1/2.
    expected = {"square": 1.0, "circle": math.pi / 4, "triangle": 0.5}
    for row in data["shape"].train + data["shape"].test:
        label = answer_of(row) if "conversations" in row else row["answers"][0]
        fill = crop(mask(row["image"])).mean()
        assert min(expected, key=lambda k: abs(expected[k] - fill)) == label
        assert abs(fill - expected[label]) < 0.05
        side = crop(mask(row["image"])).shape[0]
        assert 0.55 * 32 - 1 <= side <= 0.85 * 32 + 1  # big shapes


def test_count_label_is_the_number_of_separate_shapes(data: dict) -> None:
    words = {"one": 1, "two": 2, "three": 3}
    for row in data["count"].train:
        assert components(mask(row["image"])) == words[answer_of(row)]


def test_position_answer_box_holds_the_shape(data: dict) -> None:
    for row in data["position"].test:
        box = json.loads(row["answers"][0])
        assert row["answers"][0] == "[{:.2f},{:.2f},{:.2f},{:.2f}]".format(*box)  # 2 decimals, no spaces
        assert row["answer_bbox"] == [round(v * 32) for v in box] and row["size"] == [32, 32]
        x0, y0, x1, y1 = row["answer_bbox"]
        assert (x1 - x0, y1 - y0) == (16, 16)  # a quadrant
        ys, xs = np.nonzero(mask(row["image"]))
        shape_box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert x0 <= shape_box[0] and y0 <= shape_box[1] and shape_box[2] <= x1 and shape_box[3] <= y1
        iou = (shape_box[2] - shape_box[0]) * (shape_box[3] - shape_box[1]) / (16 * 16)
        assert iou > 0.5


def test_glyph_label_matches_stroke_features(data: dict) -> None:
    for row in data["glyph"].train:
        m = crop(mask(row["image"]))
        h, w = m.shape
        if m[0].mean() > 0.95:
            guess = "T"  # full top bar
        elif m[-1].mean() > 0.95:
            guess = "L"  # full bottom bar
        elif m[h // 2, w // 2]:
            guess = "X"  # strokes cross in the middle
        else:
            guess = "O"  # hollow middle
        assert guess == answer_of(row)


def test_corpus_covers_every_generated_string(data: dict) -> None:
    texts = set(corpus())
    for td in data.values():
        for row in td.train:
            assert row["conversations"][0]["value"].removeprefix("<image>\n") in texts
            assert answer_of(row) in texts
        for row in td.test:
            assert row["text"] in texts and set(row["answers"]) <= texts
    assert "gray" in texts  # a neighbouring answer word that only the ten human answers use
    assert set(SKILLS) == set(TASKS)


def test_unknown_task_and_negative_seed_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="colour.*known skills: mcq, color"):
        generate(GeneratorSpec(), tmp_path, ["colour"])
    with pytest.raises(ValueError, match="seed must be >= 0"):
        generate(GeneratorSpec(seed=-1), tmp_path, ["mcq"])


def test_embedded_sequence_yaml() -> None:
    seq, path = load_sequence("synthetic")
    assert path.name == "synthetic.yaml" and seq.data_root is None
    assert seq.generator == GeneratorSpec(seed=0, n_train=512, n_test=64, image_size=32)
    assert [(t.name, t.scorer, t.instruction) for t in seq.tasks] == [
        ("mcq", "choice", "last_line"), ("color", "vqa", "last_line"), ("shape", "contains", "last_line"),
        ("count", "exact", "last_line"), ("position", "grounding", "last_line_before_colon"),
        ("glyph", "exact", "last_line"),
    ]
    assert all(t.train == f"{t.name}/train.json" and t.test == f"{t.name}/test.json" for t in seq.tasks)


def test_materialise_caches_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVQA_CACHE", str(tmp_path / "cache"))
    seq = seq_spec(GeneratorSpec(n_train=3, n_test=2), ["color", "count"])
    root = sources.resolve_data_root(seq, tmp_path / "seq.yaml", None)
    assert root.parent == tmp_path / "cache" / "data" and root.name.startswith("synth-")
    assert json.loads((root / "DONE").read_text())["tasks"] == ["color", "count"]
    assert (root / "images" / "count" / "test_1.png").is_file()

    def fail(*args: object) -> None:
        raise AssertionError("regenerated although DONE exists")

    monkeypatch.setattr(sources, "generate", fail)
    assert sources.resolve_data_root(seq, tmp_path / "seq.yaml", None) == root
    other = seq_spec(GeneratorSpec(n_train=3, n_test=2, seed=1), ["color", "count"])
    assert sources.generator_key(other) != sources.generator_key(seq)
    data = sources.load_sequence_data(seq, tmp_path / "seq.yaml")
    assert [len(td.train) for td in data] == [3, 3]


def test_concurrent_materialisation_gives_one_complete_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVQA_CACHE", str(tmp_path))
    seq = seq_spec(GeneratorSpec(n_train=4, n_test=2), ["shape"])
    barrier, roots, errors = threading.Barrier(4), [], []

    def worker() -> None:
        barrier.wait()
        try:
            roots.append(sources.materialise(seq))
        except Exception as exc:  # reported below; a thread must not swallow it
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(roots)) == 1
    assert [p.name for p in (tmp_path / "data").iterdir()] == [roots[0].name]  # no temp folders left
    reference = tmp_path / "ref"
    generate(seq.generator, reference, ["shape"])
    got = {k: hashlib.sha256(v).hexdigest() for k, v in tree_bytes(roots[0]).items() if k != "DONE"}
    assert got == {k: hashlib.sha256(v).hexdigest() for k, v in tree_bytes(reference).items()}


def test_generated_sequence_with_foreign_layout_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVQA_CACHE", str(tmp_path))
    seq = SequenceSpec(name="s", generator=GeneratorSpec(), tasks=[
        {"name": "color", "train": "elsewhere/train.json", "test": "color/test.json", "scorer": "vqa"}])
    with pytest.raises(ValueError, match="task 'color'.*'color/train.json'"):
        sources.materialise(seq)
