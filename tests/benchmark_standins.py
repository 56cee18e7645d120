"""Stand-in data roots of UCIT, MLLM-DCL, MLLM-ACL and TriGap in their official layouts (not a test module).

The built-in sequence YAML of each benchmark names every file where the official scripts read it
(``tasks/ucit.yaml`` etc., each citing its script); :func:`build_root` writes small files at exactly those
paths: LLaVA-format train conversations, test rows ``{question_id, image, text, answer}`` with the extra
fields the official scorers read (OCRBench ``answer_type``, MathVista ``question_type`` / ``answer_type`` /
``choices`` / ``answer_option``, Sci image names with their source prefix), COCO-format caption
annotations whose ``image_id`` k belongs to the k-th test row, and tiny images in each task's image folder.
:class:`FakeJudge` stands in for an OpenAI-compatible judge endpoint on 127.0.0.1.
``defect="vizwiz_2999"`` reproduces HiDe-LLaVA issue 7 (one test row without a captioned image id).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SEQUENCES = ("ucit", "mllm-dcl", "mllm-acl", "trigap")
N_TEST = 3


def _turns(question: str, answer: str) -> list[dict[str, str]]:
    return [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]


def _qa(task: str, scorer: str, k: int) -> tuple[str, str, dict[str, Any]]:
    """Question, answer and extra test fields of row ``k`` of a task scored by ``scorer``."""
    if scorer in ("cider", "caption_official"):
        return "Describe the image briefly.", ["a red square on a table", "a small blue box", "two green dots"][k % 3], {}
    if scorer == "numeric":
        return "Subtract all red cubes. How many objects are left?", str(k + 2), {}
    if scorer == "ocrbench_official":
        kind = "Handwritten Mathematical Expression Recognition" if k == 1 else "Regular Text Recognition"
        return "What is written in the image?", ["STOP", "x^{2}+1", "Exit 12"][k % 3], {"answer_type": kind}
    if task == "Math":
        if k == 0:
            return ("Which shape is blue?\nChoices: (A) circle (B) square", "square",
                    {"question_type": "multi_choice", "answer_type": "text", "choices": "['circle', 'square']",
                     "answer_option": "B"})
        return "How many sides does the shape have?", str(3 + k), {"question_type": "free_form",
                                                                   "answer_type": "integer", "choices": "[]",
                                                                   "answer_option": ""}
    if task == "Fin":
        return ("Is the stock price rising?", "Yes", {}) if k % 2 == 0 else \
            ("Which bar is tallest?\nA. 2019\nB. 2020", "B", {})
    if scorer in ("choice",) or task == "APP":
        return "Which button opens the menu?\nA. top left\nB. bottom right", "A", {}
    if scorer == "anls":
        return "What is the invoice number?", f"INV-00{k}", {}
    return "What is shown in the image?", ["square", "circle", "triangle"][k % 3], {}


def _image_name(task: str, split: str, k: int) -> str:
    # eval_sci.py reads the source from the file name prefix: AI2D_/TQA_/VQA_/SciVerse_ exact, MapQA else
    prefix = ("AI2D_", "MapQA_", "TQA_")[k % 3] if task == "Sci" else ""
    return f"images/{prefix}{task.lower()}_{split}_{k}.png"


def build_root(sequence: str, root: Path, defect: str | None = None) -> Path:
    """Write the stand-in data root of built-in ``sequence`` under ``root``; returns ``root``."""
    from PIL import Image

    from cvqa_bench.config import SequenceSpec, read_yaml, validate_model
    from cvqa_bench.config.base import TASKS_DIR

    spec = validate_model(SequenceSpec, read_yaml(TASKS_DIR / f"{sequence}.yaml"), sequence)
    root = Path(root)
    for task in spec.tasks:
        train_images = root / (task.image_folder or spec.image_folder)
        test_images = root / task.test_image_folder if task.test_image_folder else train_images
        train, test = [], []
        for k in range(2):
            q, a, _ = _qa(task.name, task.scorer, k)
            image = _image_name(task.name, "train", k)
            train.append({"id": f"{task.name}-train-{k}", "image": image, "conversations": _turns(q, a)})
            _write_image(Image, train_images / image, k)
        for k in range(N_TEST):
            q, a, extra = _qa(task.name, task.scorer, k)
            image = _image_name(task.name, "test", k)
            test.append({"question_id": f"{task.name}-test-{k}", "image": image, "text": q, "answer": a, **extra})
            _write_image(Image, test_images / image, k + 2)
        for path, rows in ((root / task.train, train), (root / task.test, test)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rows, indent=1))
        if task.answers_file:
            drop = defect == "vizwiz_2999" and task.name == "VizWiz-Caption"
            (root / task.answers_file).write_text(json.dumps(_coco_captions(test, drop_last=drop), indent=1))
    return root


def _coco_captions(test: list[dict[str, Any]], drop_last: bool) -> dict[str, Any]:
    """The COCO caption file of UCIT: image k (1-based) is test row k; two references each."""
    annotations = [{"image_id": k, "id": 2 * k + j, "caption": caption}
                   for k, row in enumerate(test, start=1) for j, caption in enumerate((row["answer"], "an object"))]
    if drop_last:
        annotations = [a for a in annotations if a["image_id"] != len(test)]
    return {"images": [{"id": k} for k in range(1, len(test) + 1)], "annotations": annotations}


def _write_image(image_module: Any, path: Path, k: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image_module.new("RGB", [(40, 32), (32, 40), (36, 36)][k % 3], (60 * k % 256, 90, 120)).save(path, format="PNG")


class FakeJudge:
    """A chat-completions endpoint answering "4" to every request, keeping each request body."""

    def __init__(self) -> None:
        bodies = self.bodies = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                bodies.append({"path": self.path, **body})
                reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": "4"}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
