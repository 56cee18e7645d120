"""Run summary files, `cvqa report` tables and plots, checked against hand-computed numbers."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvqa_bench.report.build import build_report, print_report
from cvqa_bench.report.summary import RunSummaryError, load_run, write_run_summary
from cvqa_bench.report.formats import latex_escape, to_latex
from cvqa_bench.report.published import PublishedResult, load_published
from cvqa_bench.report.tables import ReportTable, Stat

TASKS = ["task_a", "task_b"]
SCORERS = {"task_a": "exact", "task_b": "vqa"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# (T+1)×T, row 0 = zero-shot. Per seed, by hand:
#   seed 0: final_avg (50+70)/2 = 60, mft (60+70)/2 = 65, forgetting 60-50 = 10, fwt 30-20 = 10
#   seed 1: final_avg (58+80)/2 = 69, mft (70+80)/2 = 75, forgetting 70-58 = 12
#   seed 2: final_avg (62+90)/2 = 76, mft (80+90)/2 = 85, forgetting 80-62 = 18
FINETUNE = {
    0: [[10.0, 20.0], [60.0, 30.0], [50.0, 70.0]],
    1: [[10.0, 20.0], [70.0, 40.0], [58.0, 80.0]],
    2: [[10.0, 20.0], [80.0, 20.0], [62.0, 90.0]],
}
# final_avg 60, 69, 76: mean 205/3 = 68.33; sum of squares 14137 - 205²/3 = 386/3; /(n-1) = 193/3 -> std 8.02
#   (the population std, sqrt(386/9) = 6.55, would be wrong)
# forgetting 10, 12, 18: mean 40/3 = 13.33; 568 - 1600/3 = 104/3; /2 = 52/3 -> std 4.16
# final task_a 50, 58, 62: mean 170/3 = 56.67; 9708 - 28900/3 = 224/3; /2 = 112/3 -> std 6.11
# final task_b 70, 80, 90: mean 80, std 10
FINAL_AVG_STD = math.sqrt(193 / 3)
# one llaca run: final_avg (60+75)/2 = 67.5, forgetting 60-60 = 0
LLACA = [[10.0, 20.0], [60.0, 30.0], [60.0, 75.0]]


def make_run(root: Path, name: str, method: str, seed: int, matrix: list[list[float]], lr: float = 0.001,
             with_config: bool = True) -> Path:
    """A run folder from a hand-written matrix and a hand-written config.yaml."""
    run_dir = root / name
    write_run_summary(run_dir, np.array(matrix), TASKS, SCORERS,
                      {"name": name, "sequence": "toy", "method": method, "seed": seed})
    if with_config:
        (run_dir / "config.yaml").write_text(
            f"sequence: toy\nseed: {seed}\nmethod:\n  name: {method}\n  options: {{}}\ntrain:\n  lr: {lr}\n"
            f"  max_steps: 10\n", encoding="utf-8")
    return run_dir


@pytest.fixture(scope="module")
def seeds_and_llaca(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three finetune seeds of one config and one llaca run (read-only for the tests using it)."""
    root = tmp_path_factory.mktemp("runs")
    dirs = [make_run(root, f"ft-s{s}", "finetune", s, m) for s, m in FINETUNE.items()]
    return dirs + [make_run(root, "llaca-s0", "llaca", 0, LLACA)]


def png_size(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        return image.size


def assert_latex_balanced(tex: str) -> None:
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{([^}]*)\}", tex):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env, f"\\end{{{env}}} does not close the open environment"
    assert not stack, f"unclosed environments {stack}"
    depth = 0
    for line in tex.splitlines():
        if line.startswith("%"):
            continue
        for char in re.sub(r"\\[{}]", "", line):  # escaped braces are text
            depth += {"{": 1, "}": -1}.get(char, 0)
            assert depth >= 0, f"unbalanced '}}' in {line!r}"
    assert depth == 0
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert not re.search(r"(?<!\\)_", body), "unescaped underscore"
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert body.count(rule) == body.count(r"\begin{tabular}")


# ---------------------------------------------------------------- run summary


def test_write_run_summary_files_and_metrics(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    third = 100 / 3  # needs full float repr to round-trip
    matrix = np.array([[10.0, 20.0], [60.0, 30.0], [50.0, third]])
    metrics = write_run_summary(run_dir, matrix, TASKS, SCORERS,
                                {"name": "run", "sequence": "toy", "method": "finetune", "seed": 3})
    # final_avg (50 + 100/3) / 2; mft (60 + 100/3) / 2; forgetting 60 - 50 = 10; fwt 30 - 20 = 10
    assert metrics["final_avg"] == pytest.approx((50 + third) / 2)
    assert metrics["mft"] == pytest.approx((60 + third) / 2)
    assert metrics["forgetting"] == pytest.approx(10.0)
    assert metrics["fwt"] == pytest.approx(10.0)
    rows = list(csv.reader((run_dir / "matrix.csv").open(encoding="utf-8")))
    assert rows[0] == ["stage", "trained_task", "task_a", "task_b"]
    assert [r[:2] for r in rows[1:]] == [["0", "zero-shot"], ["1", "task_a"], ["2", "task_b"]]
    assert float(rows[3][3]) == third  # exact, not rounded to 2 decimals
    doc = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert doc["tasks"] == TASKS and doc["scorers"] == SCORERS
    assert doc["meta"] == {"name": "run", "sequence": "toy", "method": "finetune", "seed": 3}
    assert doc["metrics"]["forgetting"] == pytest.approx(10.0)
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "| 1 | task_a | 60.00 | 30.00 |" in report
    assert "| *scorer* | *exact* | *vqa* |" in report  # the scorer under each task name
    assert re.search(r"\| forgetting \| Forgetting \| +\| 10\.00 \|", report)
    assert re.search(r"\| final_avg \| Avg\.ACC \|", report)
    width, height = png_size(run_dir / "heatmap.png")
    assert 400 <= width <= 2000 and 300 <= height <= 2000
    assert not list(run_dir.glob(".*.tmp"))  # atomic writes leave no temp files


def test_load_run_round_trips(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "ft-s1", "finetune", 1, FINETUNE[1])
    run = load_run(run_dir)
    assert run.name == "ft-s1" and run.tasks == TASKS and run.scorers == SCORERS
    np.testing.assert_array_equal(run.matrix, np.array(FINETUNE[1]))
    assert run.metrics["final_avg"] == pytest.approx(69.0)
    assert run.metrics["forgetting"] == pytest.approx(12.0)
    assert run.config["train"]["lr"] == 0.001 and run.meta["seed"] == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"matrix": np.zeros((2, 2))}, r"\(T\+1\)×T = \(3, 2\)"),
        ({"matrix": np.array([[1.0, 2.0], [np.nan, 4.0], [5.0, 6.0]])}, "stage 1, task 'task_a'"),
        ({"scorers": {"task_a": "exact"}}, "one scorer per task"),
        ({"meta": {"name": "x", "method": "m"}}, r"meta lacks \['sequence', 'seed'\]"),
        ({"tasks": ["a", "a"]}, "unique"),
        ({"meta": {"name": "x", "sequence": "toy", "method": "m", "seed": 0, "path": Path("p")}}, "JSON"),
    ],
)
def test_write_run_summary_rejects_bad_input(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"matrix": np.array(FINETUNE[0]), "tasks": TASKS, "scorers": SCORERS,
            "meta": {"name": "x", "sequence": "toy", "method": "m", "seed": 0}} | kwargs
    with pytest.raises(ValueError, match=match):
        write_run_summary(tmp_path / "run", **args)
    assert not (tmp_path / "run" / "matrix.csv").exists()


def test_load_run_errors_name_the_file(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "r", "finetune", 0, FINETUNE[0])
    matrix_csv, metrics_json = run_dir / "matrix.csv", run_dir / "metrics.json"
    good_csv, good_json = matrix_csv.read_text(), metrics_json.read_text()

    matrix_csv.write_text(good_csv.replace("60.0", "sixty"))
    with pytest.raises(RunSummaryError, match=re.escape(f"{matrix_csv}:3") + ".*sixty"):
        load_run(run_dir)
    matrix_csv.write_text(good_csv.replace("task_a,", "task_x,", 1))
    with pytest.raises(RunSummaryError, match="matrix.csv"):
        load_run(run_dir)
    matrix_csv.write_text(good_csv.replace("60.0", "61.0"))  # metrics.json now stale
    with pytest.raises(RunSummaryError, match=re.escape(str(metrics_json)) + ".*disagrees"):
        load_run(run_dir)
    matrix_csv.write_text(good_csv)
    metrics_json.write_text(good_json[:-5])
    with pytest.raises(RunSummaryError, match=re.escape(str(metrics_json)) + ".*not valid JSON"):
        load_run(run_dir)
    metrics_json.write_text(json.dumps({"tasks": TASKS}))
    with pytest.raises(RunSummaryError, match="metrics.json: must be an object"):
        load_run(run_dir)
    metrics_json.write_text(good_json)
    (run_dir / "config.yaml").write_text("- a list\n")
    with pytest.raises(RunSummaryError, match="config.yaml: must be a mapping"):
        load_run(run_dir)
    matrix_csv.unlink()
    with pytest.raises(RunSummaryError, match=re.escape(str(matrix_csv))):
        load_run(run_dir)
    with pytest.raises(RunSummaryError, match="not a directory"):
        load_run(tmp_path / "nope")


# ---------------------------------------------------------------- build_report


def test_single_run_report_all_formats(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "ft-s0", "finetune", 0, FINETUNE[0])
    out = tmp_path / "out"
    result = build_report([run_dir], out, formats=("md", "csv", "json", "latex"))
    names = {p.name for p in result.files}
    assert {"report.md", "report.tex", "report.json", "report_matrix.csv", "report_metrics.csv",
            "heatmap.png"} <= names
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| 0 | zero-shot | 10.00 | 20.00 |" in md and "| 2 | task_b | 50.00 | 70.00 |" in md
    metrics = {r["metric"]: r for r in csv.DictReader((out / "report_metrics.csv").open(encoding="utf-8"))}
    # seed 0 by hand: final_avg 60, mft 65, forgetting 10, bwt -10, avg_incremental (60 + 60)/2, fwt 10
    expected = {"final_avg": 60, "mft": 65, "forgetting": 10, "bwt": -10, "avg_incremental": 60, "fwt": 10}
    for name, value in expected.items():
        assert float(metrics[name]["value"]) == pytest.approx(value), name
    assert metrics["final_avg"]["paper name"] == "Avg.ACC" and metrics["mft"]["paper name"] == "New.ACC"
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert doc["runs"][0]["matrix"] == FINETUNE[0]
    assert_latex_balanced((out / "report.tex").read_text(encoding="utf-8"))
    assert 400 <= png_size(out / "heatmap.png")[0] <= 2000


def test_seeds_are_grouped_as_mean_and_sample_std(tmp_path: Path, seeds_and_llaca: list[Path]) -> None:
    out = tmp_path / "out"
    result = build_report(seeds_and_llaca, out, formats=("md", "csv", "json", "latex"))
    assert [(g.label, len(g.runs)) for g in result.groups] == [("finetune", 3), ("llaca", 1)]
    md = (out / "report.md").read_text(encoding="utf-8")
    finetune_row = next(line for line in md.splitlines() if line.startswith("| finetune |"))
    cells = [c.strip() for c in finetune_row.strip("|").split("|")]
    header = [c.strip() for c in next(line for line in md.splitlines() if line.startswith("| method |"))
              .strip("|").split("|")]
    row = dict(zip(header, cells, strict=True))
    assert row["n"] == "3" and row["seeds"] == "0,1,2"
    assert row["final_avg"] == "68.33 ± 8.02"
    assert row["forgetting"] == "13.33 ± 4.16"
    assert row["mft"] == "75.00 ± 10.00"
    assert row["task_a"] == "56.67 ± 6.11" and row["task_b"] == "80.00 ± 10.00"
    llaca_row = next(line for line in md.splitlines() if line.startswith("| llaca |"))
    assert "| 67.50 |" in llaca_row and "±" not in llaca_row  # n = 1: no std
    assert "ddof=1" in md

    comparison = {r["method"]: r for r in csv.DictReader((out / "report_comparison.csv").open(encoding="utf-8"))}
    assert float(comparison["finetune"]["final_avg mean"]) == pytest.approx(205 / 3)
    assert float(comparison["finetune"]["final_avg std"]) == pytest.approx(FINAL_AVG_STD)
    assert comparison["llaca"]["final_avg std"] == ""
    records = json.loads((out / "report.json").read_text(encoding="utf-8"))["tables"]["comparison"]["rows"]
    assert records[0]["forgetting"] == pytest.approx({"mean": 40 / 3, "std": math.sqrt(52 / 3), "n": 3})
    assert_latex_balanced((out / "report.tex").read_text(encoding="utf-8"))
    assert r"task\_a" in (out / "report.tex").read_text(encoding="utf-8")
    width, height = png_size(out / "seen_average.png")
    assert 400 <= width <= 2000 and 300 <= height <= 2000


def test_different_config_is_not_grouped_and_is_labelled(tmp_path: Path) -> None:
    dirs = [make_run(tmp_path, "a", "finetune", 0, FINETUNE[0], lr=0.001),
            make_run(tmp_path, "b", "finetune", 1, FINETUNE[1], lr=0.002),
            make_run(tmp_path, "c", "finetune", 2, FINETUNE[2], with_config=False)]
    result = build_report(dirs, tmp_path / "out")
    labels = [g.label for g in result.groups]
    assert labels == ["finetune (train.lr=0.001)", "finetune (train.lr=0.002)", "c"]
    assert all(len(g.runs) == 1 for g in result.groups)


def test_repeated_seed_is_warned(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", "finetune", 0, FINETUNE[0])
    b = make_run(tmp_path, "b", "finetune", 0, FINETUNE[1])
    result = build_report([a, b], tmp_path / "out")
    assert len(result.groups) == 1 and any("repeated seeds" in w for w in result.warnings)


def test_published_table_is_labelled_with_provenance(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build_report([make_run(tmp_path, "r", "finetune", 0, FINETUNE[0])], out, formats=("md", "latex"),
                 published=True)
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "### Published (not reproduced here): LLaVA-1.5 on CoIN, arXiv 2410.10868 v1 abstract" in md
    block = md.split("arXiv 2410.10868 v1 abstract", 1)[1].split("###", 1)[0]
    assert re.search(r"\[finetune\] \| 41\.31 \| 22\.67 \|", block)
    assert re.search(r"\[llaca\] \| 61\.89 \| 2\.68 \|", block)
    assert "arXiv 2410.10868 v3 abstract" in md
    assert_latex_balanced((out / "report.tex").read_text(encoding="utf-8"))


def test_load_published_matches_reference_section_4() -> None:
    # docs/methods.md, "Published numbers", typed by hand
    expected = {
        ("v1", "finetune"): {"final_avg": 41.31, "forgetting": 22.67},
        ("v1", "llaca"): {"final_avg": 61.89, "forgetting": 2.68},
        ("v3", "finetune"): {"forgetting": 5.42},
        ("v3", "llaca"): {"forgetting": 1.93},
    }
    entries = load_published()
    assert all(isinstance(e, PublishedResult) and e.arxiv == "2410.10868" and e.where == "abstract" for e in entries)
    assert {(e.version, e.method): e.metrics for e in entries} == expected
    assert {e.backbone for e in entries if e.version == "v1"} == {"LLaVA-1.5"}


def test_print_report_shows_tables(tmp_path: Path, seeds_and_llaca: list[Path]) -> None:
    from rich.console import Console

    result = build_report(seeds_and_llaca, tmp_path / "out", published=True)
    console = Console(record=True, width=250)
    print_report(result, console)
    text = console.export_text()
    assert "68.33 ± 8.02" in text and "[llaca]" in text and "Published (not reproduced here)" in text
    assert "report.md" in text


@pytest.mark.parametrize("formats", [("html",), ()])
def test_bad_format_is_value_error(tmp_path: Path, formats: tuple[str, ...]) -> None:
    run_dir = make_run(tmp_path, "r", "finetune", 0, FINETUNE[0])
    with pytest.raises(ValueError, match="choose from"):
        build_report([run_dir], tmp_path / "out", formats=formats)


def test_latex_escape_specials() -> None:
    text = latex_escape(r"50% a_b & c#{x}~^\ $")
    assert text == r"50\% a\_b \& c\#\{x\}\textasciitilde{}\textasciicircum{}\textbackslash{} \$"


def test_latex_table_with_special_names_is_balanced() -> None:
    table = ReportTable("odd_key", "Title_with {braces}", ["method_name", "final_avg"],
                        [["ema_0.99 {x}", Stat(-1.5, 0.25, 2)], ["100%", None]], caption="a_b & c")
    tex = to_latex(table)
    assert_latex_balanced(tex)
    assert r"$-$1.50 $\pm$ 0.25" in tex and r"ema\_0.99 \{x\}" in tex and "100\\%" in tex


def test_report_import_does_not_load_matplotlib_or_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, cvqa_bench.report.build; "
            "print(sorted(m for m in ('torch', 'matplotlib', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
