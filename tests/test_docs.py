"""Issue 31 (11): a short README with an install section and a contents list, every link of it and of the
pages it sends readers to resolving (files and #anchors), and a sequence-YAML reference naming every field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from cvqa_bench.config.base import _model_in
from cvqa_bench.config.sequence import SequenceSpec

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# The pages the README's long parts moved to (issue 31); docs/design.md, methods.md and protocol.md have
# their own checks (tests/test_layout.py).
PAGES = [README, *(ROOT / "docs" / f"{name}.md" for name in
                   ("runs", "sequence-yaml", "methods-and-results", "gpus", "reproducibility", "paths"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(path: Path) -> str:
    """The file's text without its fenced code blocks (a link inside one is an example, not a link)."""
    return re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def anchors(path: Path) -> set[str]:
    """The #anchors GitHub gives the headings of a Markdown file."""
    headings = re.findall(r"^#+ (.+)$", _prose(path), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def links(path: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(path)) if not re.match(r"[a-z]+:", t)]


def test_the_readme_is_short_and_starts_with_what_a_newcomer_needs() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) < 12_000, "the long parts belong in docs/"
    sections = re.findall(r"^## (.+)$", _prose(README), flags=re.M)
    assert sections[:6] == ["Install", "Two commands", "The command line", "Your own data", "Your own model",
                            "Results"]
    contents = text.split("**Contents:**", 1)[1].split("\n\n", 1)[0]  # the paragraph
    assert [t.lstrip("#") for t in LINK.findall(contents)] == [
        re.sub(r"[^\w\- ]", "", s.lower()).replace(" ", "-") for s in sections]
    install = text.split("## Install", 1)[1].split("\n## ", 1)[0]
    assert "pip install" in install and "make install" in install


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves_to_a_file_and_its_anchor(page: Path) -> None:
    assert page.is_file(), page
    for target in links(page):
        file, _, anchor = target.partition("#")
        where = (page.parent / file).resolve() if file else page
        assert where.exists(), f"{page.name}: {target}"
        if anchor:
            assert anchor in anchors(where), f"{page.name}: {target} (anchors: {sorted(anchors(where))})"


def test_the_readme_links_every_moved_page_and_the_figures_moved_with_their_tables() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README)}
    assert {p.resolve() for p in PAGES[1:]} <= linked
    results = (ROOT / "docs" / "methods-and-results.md").read_text(encoding="utf-8")
    for figure in ("paper-table/report/seen_average.png", "alpha-scale/report/alpha_scale.png"):
        assert f"](../results/reference/{figure})" in results


def sequence_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every field of a sequence YAML as a dotted path (``tasks[].image_aspect.train``)."""
    paths = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        inner = _model_in(field.annotation)
        if inner is not None:
            paths += sequence_fields(inner, f"{path}[]." if "list[" in str(field.annotation) else f"{path}.")
    return paths


def test_the_sequence_yaml_reference_names_every_field() -> None:
    reference = (ROOT / "docs" / "sequence-yaml.md").read_text(encoding="utf-8")
    fields = sequence_fields(SequenceSpec)
    assert "tasks[].image_aspect.train" in fields and "generator.n_train" in fields  # the walk goes deep
    missing = [f for f in fields if f"| `{f}` |" not in reference]
    assert missing == [], f"docs/sequence-yaml.md does not describe {missing}"
