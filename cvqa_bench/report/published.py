"""The paper's headline figures (package data ``published.yaml``), with their provenance, as labelled tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cvqa_bench.metrics import METRIC_FORMULAS, PAPER_NAMES
from cvqa_bench.report.tables import ReportTable


@dataclass(frozen=True)
class PublishedResult:
    """One published headline figure set (package data ``published.yaml``), with its provenance."""

    method: str
    label: str
    backbone: str
    data: str | None
    data_note: str
    metrics: dict[str, float]
    arxiv: str
    version: str
    where: str

    @property
    def source(self) -> str:
        """``arXiv <id> <version> <where>``, e.g. ``arXiv 2410.10868 v1 abstract``."""
        return f"arXiv {self.arxiv} {self.version} {self.where}"


def load_published() -> list[PublishedResult]:
    """The published figures shipped in ``cvqa_bench/report/published.yaml``."""
    import importlib.resources

    import yaml

    resource = importlib.resources.files("cvqa_bench.report") / "published.yaml"
    entries = yaml.safe_load(resource.read_text(encoding="utf-8"))
    out = []
    for i, e in enumerate(entries or []):
        try:
            prov = e["provenance"]
            metrics = {str(k): float(v) for k, v in e["metrics"].items()}
            out.append(PublishedResult(str(e["method"]), str(e["label"]), str(e["backbone"]), e.get("data"),
                                       str(e.get("data_note", "")), metrics, str(prov["arxiv"]), str(prov["version"]),
                                       str(prov["where"])))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{resource}: entry {i} is malformed ({exc!r})") from exc
    return out


def published_tables(entries: Sequence[PublishedResult]) -> list[ReportTable]:
    """One clearly labelled table per (backbone, data, source): these numbers are not reproduced here."""
    blocks: dict[tuple[str, str | None, str], list[PublishedResult]] = {}
    for e in entries:
        blocks.setdefault((e.backbone, e.data, e.source), []).append(e)
    tables = []
    for n, ((backbone, data, source), rows) in enumerate(blocks.items()):
        names = [m for m in METRIC_FORMULAS if any(m in r.metrics for r in rows)]
        where = f"{backbone} on {data}" if data else backbone
        notes = sorted({f"Data: {r.data_note}." for r in rows if r.data_note})
        tables.append(ReportTable(
            f"published-{n}", f"Published (not reproduced here): {where}, {source}", ["method", *names],
            [[f"{r.label} [{r.method}]", *(r.metrics.get(m) for m in names)] for r in rows],
            "Headline figures quoted from the paper for context; they were not produced by this harness.",
            subheader=["", *(PAPER_NAMES.get(m, "") for m in names)], notes=notes))
    return tables
