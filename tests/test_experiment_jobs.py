"""``cvqa experiment --jobs``: a bad count is refused before any run folder exists."""

from pathlib import Path

from typer.testing import CliRunner

from cvqa_bench.cli import app


def test_jobs_below_one_is_refused_before_writing(tmp_path: Path) -> None:
    spec = tmp_path / "exp.yaml"
    out = tmp_path / "out"
    spec.write_text(f"name: x\nrun_config: configs/default.yaml\nmethods: [finetune]\nseeds: [0]\nout: {out}\n")
    result = CliRunner().invoke(app, ["experiment", str(spec), "--jobs", "0"])
    assert result.exit_code == 2
    assert "--jobs must be at least 1" in result.output
    assert not out.exists()
