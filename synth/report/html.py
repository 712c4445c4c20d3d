"""Run summaries: the markdown artifact of a flow run, the CLI's closing table, and the HTML run report.

The report (``OUT/report/index.html``, :func:`write_report`) is one self-contained page: per recipe, sample kept
rows per language and sample rejected rows per reject reason (generated text, its source, the LID score), and
interactive Plotly figures sized to the run (a figure is drawn only where it has enough points to say something;
otherwise the numbers are written out). plotly.js is inlined once, so the page opens from ``file://`` offline.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.parquet as pq

from synth.errors import OutputError
from synth.pipeline import RunSummary
from synth.recipes import recipe_class
from synth.recipes.base import RecipeView, Row
from synth.store.files import atomic_write_bytes
from synth.store.manifest import Manifest
from synth.store.segments import SegmentStore
from synth.store.shards import REJECTED as REJECTED_GROUP

if TYPE_CHECKING:
    import plotly.graph_objects as go


def summary_rows(summary: RunSummary) -> list[tuple[str, int, int]]:
    """(language, kept, rejected) for every language that has rows."""
    langs = sorted(set(summary.kept) | set(summary.rejected))
    return [(lang, summary.kept.get(lang, 0), summary.rejected.get(lang, 0)) for lang in langs]


def summary_markdown(summary: RunSummary) -> str:
    """A markdown table per language plus throughput, tokens and wall time."""
    usage = summary.usage
    tokens_out = usage.get("completion_tokens", 0)
    gen_s = usage.get("generate_s", 0.0) or 0.0
    lines = [
        f"## polysynth `{summary.recipe}` run",
        "",
        f"Output: `{summary.out}` · config `{summary.config_hash}` · "
        f"units {summary.units_generated} generated / {summary.units_total} total"
        + (f" ({summary.units_failed} failed)" if summary.units_failed else "")
        + f" · wall {summary.wall_s:.1f} s",
        "",
        "| language | kept | rejected |",
        "|---|---:|---:|",
        *(f"| {lang} | {kept} | {rejected} |" for lang, kept, rejected in summary_rows(summary)),
        "",
        f"LLM calls {usage.get('calls', 0)} ({usage.get('failed_calls', 0)} failed, "
        f"{usage.get('reused', 0)} answers reused from stored generations) · "
        f"prompt tokens {usage.get('prompt_tokens', 0)} · completion tokens {tokens_out} · "
        f"output tokens/s {tokens_out / gen_s if gen_s else 0:.1f}",
    ]
    kept = sum(summary.kept.values())
    if usage.get("candidates"):
        lines[-1] += f" · candidates generated {usage['candidates']}"
        if kept:
            lines[-1] += f" ({usage['candidates'] / kept:.1f} and {tokens_out / kept:.1f} output tokens per kept row)"
    if summary.reject_reasons:
        lines += ["", "Reject reasons: " + ", ".join(f"{k} {v}" for k, v in summary.reject_reasons.items())]
    return "\n".join(lines)


# -- the HTML run report -------------------------------------------------------------------------


KEPT, REJECTED = "kept", "rejected"  # the two outcomes of a row, as the page names them
KEPT_SAMPLES_PER_LANGUAGE = 5
REJECTED_SAMPLES_PER_REASON = 3
OPEN_LANGUAGES = 4  # kept samples of the first languages show open; the rest are one click away, keeping the page short
# Below these counts a figure says less than the numbers themselves, so the page writes the numbers instead.
MIN_HISTOGRAM_VALUES = 20
MIN_LINE_POINTS = 3
MAX_HISTOGRAM_BINS = 30
TEXT_CHARS = 2000  # of a sample's generated text: whole in practice, bounded for a runaway generation
SOURCE_CHARS = 300  # of a sample's source and detail: enough to recognise the passage, sentence or outline
SCAN_BATCH_ROWS = 4096
COLORS = {KEPT: "#2a9d8f", REJECTED: "#e76f51"}
NEUTRAL_COLOR = "#264653"
FIGURE_HEIGHT = "330px"
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Sample:
    """One row as the report shows it."""

    lang: str
    text: str
    source: str
    detail: str
    lid_score: float | None


@dataclass
class RecipeReport:
    """What the report shows for one recipe: counts (equal to the manifest's totals), distributions, cost, samples."""

    name: str
    status: str
    model: str
    finished_at: str
    usage: dict[str, Any]  # the manifest's totals.usage of the recipe's last run
    kept: dict[str, int] = field(default_factory=dict)  # language -> rows
    rejected: dict[str, int] = field(default_factory=dict)  # language -> rows
    reasons: dict[str, int] = field(default_factory=dict)  # reject reason -> rows
    lid_scores: dict[str, list[float]] = field(default_factory=lambda: {KEPT: [], REJECTED: []})
    lengths: dict[str, list[int]] = field(default_factory=lambda: {KEPT: [], REJECTED: []})
    batch_rates: list[float] = field(default_factory=list)  # output tokens/s of each ledger segment, oldest first
    kept_samples: dict[str, list[Sample]] = field(default_factory=dict)  # language -> its first kept rows
    rejected_samples: dict[str, list[Sample]] = field(default_factory=dict)  # reason -> its first rejected rows

    @property
    def kept_rows(self) -> int:
        return sum(self.kept.values())

    @property
    def rejected_rows(self) -> int:
        return sum(self.rejected.values())

    def per_kept_row(self, usage_key: str) -> float | None:
        """``usage[usage_key]`` per kept row; None when usage lacks the key or nothing was kept."""
        if usage_key not in self.usage or not self.kept_rows:
            return None
        return self.usage[usage_key] / self.kept_rows


def report_data(out: Path | str) -> dict[str, RecipeReport]:
    """Per recipe (by name), what the report shows, read from the manifest, the shards and the ledger's usage."""
    out = Path(out)
    if not (out / "manifest.json").is_file():
        raise OutputError("no manifest.json: not a polysynth output directory", file=str(out))
    manifest = Manifest(out)
    return {name: _recipe_report(out, name, state) for name, state in sorted(manifest.recipes.items())}


def _read_batches(path: Path, columns: Sequence[str]) -> Iterator[list[Row]]:
    """The rows of a shard in batches, with those of ``columns`` it has (kept shards have no reject_reason)."""
    shard = pq.ParquetFile(path)
    present = [c for c in dict.fromkeys(columns) if c in shard.schema_arrow.names]
    for batch in shard.iter_batches(batch_size=SCAN_BATCH_ROWS, columns=present):
        yield batch.to_pylist()


def _recipe_report(out: Path, name: str, state: dict[str, Any]) -> RecipeReport:
    """One recipe's counts and distributions from one pass over its shards' small columns, then its samples."""
    view = recipe_class(name).view
    totals = state.get("totals", {})
    report = RecipeReport(
        name=name,
        status=state.get("status", "?"),
        model=state.get("model") or totals.get("model") or "?",
        finished_at=state.get("finished_at") or "",
        usage=totals.get("usage", {}),
    )
    shards = state.get("shards", [])
    for shard in shards:
        outcome = REJECTED if shard["group"] == REJECTED_GROUP else KEPT
        per_language = report.rejected if outcome == REJECTED else report.kept
        for rows in _read_batches(out / shard["path"], ("lang", "reject_reason", "lid_score", *view.length_columns)):
            for row in rows:
                per_language[row["lang"]] = per_language.get(row["lang"], 0) + 1
                if outcome == REJECTED:
                    report.reasons[row["reject_reason"]] = report.reasons.get(row["reject_reason"], 0) + 1
                if row.get("lid_score") is not None:
                    report.lid_scores[outcome].append(row["lid_score"])
                length = view.length(row)
                if length is not None:
                    report.lengths[outcome].append(length)
    _add_samples(out, shards, view, report)
    report.batch_rates = _batch_rates(out, name)
    return report


def _add_samples(out: Path, shards: list[dict[str, Any]], view: RecipeView, report: RecipeReport) -> None:
    """The first kept rows of each language and the first rejected rows of each reason, in shard order. A shard is
    read only until the samples it can add are complete, so a large output costs about what a small one does."""
    for shard in shards:
        if shard["group"] == REJECTED_GROUP:
            samples, key, limit = report.rejected_samples, "reject_reason", REJECTED_SAMPLES_PER_REASON
            wanted = report.reasons
        else:  # a kept shard holds one language, its group
            samples, key, limit = report.kept_samples, "lang", KEPT_SAMPLES_PER_LANGUAGE
            wanted = {shard["group"]: report.kept.get(shard["group"], 0)}
        for rows in _read_batches(out / shard["path"], ("lang", "reject_reason", "lid_score", *view.sample_columns)):
            for row in rows:
                bucket = samples.setdefault(row[key], [])
                if len(bucket) < limit:
                    bucket.append(
                        Sample(
                            lang=row["lang"],
                            text=shorten(view.text(row), TEXT_CHARS),
                            source=shorten(view.source(row), SOURCE_CHARS),
                            detail=shorten(view.detail(row), SOURCE_CHARS),
                            lid_score=row.get("lid_score"),
                        )
                    )
            if all(len(samples.get(k, [])) >= min(count, limit) for k, count in wanted.items()):
                break


def _batch_rates(out: Path, recipe: str) -> list[float]:
    """Output tokens per second of each committed batch (ledger segment) that called the model, oldest first."""
    store = SegmentStore(out, recipe)
    usages = [store.usage(sid) for sid in store.segments()]
    return [
        usage["completion_tokens"] / usage["generate_s"]
        for usage in usages
        if usage.get("completion_tokens") and usage.get("generate_s")
    ]


# -- figures: each drawn only when the run has enough points for it ------------------------------


def _styled(fig: go.Figure, title: str, x_title: str, y_title: str, **layout: Any) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        title={"text": title, "x": 0.02},
        xaxis_title=x_title,
        yaxis_title=y_title,
        margin={"l": 55, "r": 15, "t": 60, "b": 50},
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.12, "traceorder": "normal"},
        **layout,
    )
    return fig


def _rows_figure(report: RecipeReport) -> go.Figure:
    import plotly.graph_objects as go

    languages = sorted(set(report.kept) | set(report.rejected))
    bars = [
        go.Bar(name=outcome, x=languages, y=[counts.get(lang, 0) for lang in languages], marker_color=COLORS[outcome])
        for outcome, counts in ((KEPT, report.kept), (REJECTED, report.rejected))
    ]
    return _styled(go.Figure(bars), "Rows per language", "language", "rows", barmode="stack")


def _reasons_figure(report: RecipeReport) -> go.Figure:
    import plotly.graph_objects as go

    reasons = sorted(report.reasons, key=report.reasons.get)  # the most frequent on top
    bar = go.Bar(x=[report.reasons[r] for r in reasons], y=reasons, orientation="h", marker_color=COLORS[REJECTED])
    return _styled(go.Figure(bar), "Reject reasons", "rows", "")


def _histogram_figure(title: str, x_title: str, values: dict[str, list[float]], edges: np.ndarray) -> go.Figure:
    """Kept and rejected values stacked, binned here so the page holds counts, not every value of a large run."""
    import plotly.graph_objects as go

    ranges = [f"{low:.3g}–{high:.3g}" for low, high in zip(edges[:-1], edges[1:])]
    bars = [
        go.Bar(
            name=outcome,
            x=((edges[:-1] + edges[1:]) / 2).tolist(),
            y=np.histogram(outcome_values, edges)[0].tolist(),
            width=np.diff(edges).tolist(),
            customdata=ranges,
            hovertemplate="%{customdata}: %{y} rows",
            marker_color=COLORS[outcome],
        )
        for outcome, outcome_values in values.items()
        if outcome_values
    ]
    return _styled(go.Figure(bars), title, x_title, "rows", barmode="stack", bargap=0.05)


def _cost_figure(report: RecipeReport) -> go.Figure:
    import plotly.graph_objects as go

    per_step = report.usage.get("per_step", {})
    bars = [go.Bar(name="model calls", x=list(per_step), y=list(per_step.values()), marker_color=NEUTRAL_COLOR)]
    if report.usage.get("reused"):
        reused = report.usage["reused"]
        bars.append(go.Bar(name="reused answers", x=["reused (all steps)"], y=[reused], marker_color=COLORS[KEPT]))
    return _styled(go.Figure(bars), "LLM calls per step (last run)", "step", "calls")


def _throughput_figure(report: RecipeReport) -> go.Figure:
    import plotly.graph_objects as go

    batches = list(range(1, len(report.batch_rates) + 1))
    line = go.Scatter(x=batches, y=report.batch_rates, mode="lines+markers", line_color=NEUTRAL_COLOR)
    return _styled(go.Figure(line), "Throughput per batch", "batch (ledger segment)", "output tokens/s")


def _values_list(values: dict[str, list[float]], digits: int) -> str:
    return "; ".join(
        f"{outcome}: " + ", ".join(f"{v:.{digits}f}" for v in sorted(outcome_values))
        for outcome, outcome_values in values.items()
        if outcome_values
    )


def _charts(report: RecipeReport) -> tuple[list[tuple[str, go.Figure]], list[str]]:
    """The recipe's figures (name, figure) and, for each figure the run is too small for, a note with the numbers."""
    figures: list[tuple[str, go.Figure]] = []
    notes: list[str] = []
    if report.kept or report.rejected:
        figures.append(("rows", _rows_figure(report)))
    if report.reasons:
        figures.append(("reasons", _reasons_figure(report)))
    lid_edges = np.linspace(0, 1, 21)
    distributions = (
        ("lid", "LID score of the detected language", "fastText score", report.lid_scores, 2, lambda _: lid_edges),
        ("lengths", "Length of the generated text", "characters", report.lengths, 0, _length_edges),
    )
    for name, title, unit, values, digits, edges in distributions:
        count = sum(len(v) for v in values.values())
        if count >= MIN_HISTOGRAM_VALUES:
            figures.append((name, _histogram_figure(title, unit, values, edges(values))))
        elif count:
            listed = _values_list(values, digits)
            notes.append(f"{title} ({unit}; {_count(count, 'row')}, too few for a histogram): {listed}")
        else:
            notes.append(f"{title}: no row has one.")
    if any(report.usage.get("per_step", {}).values()) or report.usage.get("reused"):
        figures.append(("cost", _cost_figure(report)))
    elif not report.usage.get("calls"):
        notes.append("LLM calls: none (this run needed no model).")
    if len(report.batch_rates) >= MIN_LINE_POINTS:
        figures.append(("throughput", _throughput_figure(report)))
    elif report.batch_rates:
        rates = ", ".join(f"{rate:.1f}" for rate in report.batch_rates)
        batches = _count(len(report.batch_rates), "batch", "batches")
        notes.append(f"Output tokens/s per batch: {rates} ({batches}, too few for a line).")
    return figures, notes


def _length_edges(values: dict[str, list[float]]) -> np.ndarray:
    every = [v for outcome_values in values.values() for v in outcome_values]
    return np.histogram_bin_edges(every, bins=min(MAX_HISTOGRAM_BINS, math.ceil(math.sqrt(len(every)))))


# -- the page ------------------------------------------------------------------------------------

PAGE_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1200px;margin:0 auto;padding:0 16px 48px;
 color:#1d2b36;line-height:1.4}
h1{margin:24px 0 4px}h2{margin:40px 0 4px;border-bottom:2px solid #264653;padding-bottom:4px}
h3{margin:24px 0 8px}h4{margin:16px 0 6px;font-weight:600}
.sub{color:#5b6b77;margin:0 0 12px}.headline{font-size:1.05em;margin:6px 0 14px}
.status{font-size:.6em;font-weight:normal;padding:2px 8px;border-radius:10px;background:#e9f5f3;color:#1f6f66;
 vertical-align:middle}.status.failed,.status.running{background:#fdece7;color:#a3402a}
table{border-collapse:collapse;margin:4px 0 12px}td,th{border:1px solid #d5dde3;padding:4px 8px;vertical-align:top}
th{background:#f3f6f8;text-align:left}td.num{text-align:right;white-space:nowrap}
table.samples{width:100%;table-layout:fixed}table.samples td{white-space:pre-line;overflow-wrap:anywhere}
table.samples col.lang{width:4em}table.samples col.lid{width:4.5em}table.samples col.text{width:48%}
.detail{color:#5b6b77;font-size:.88em;margin-top:4px}.empty{color:#a3402a}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:8px}
.figure{border:1px solid #e3e8ec;border-radius:4px}.notes li{color:#3d4d59}
details>summary{cursor:pointer;font-weight:600;font-size:1.1em;margin:18px 0 8px}
details.language{margin-left:12px}details.language>summary{font-size:1em;margin:10px 0 6px}
"""


def _number(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _count(n: int, noun: str, plural: str = "") -> str:
    """``n`` and ``noun``, in the plural (``plural``, else noun + "s") unless ``n`` is 1: "1 row", "3 rows"."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {plural or noun + 's'}"


def _headline(report: RecipeReport) -> str:
    """The recipe's numbers in one line: rows, output tokens per kept row, calls, reuse, throughput."""
    usage = report.usage
    total = report.kept_rows + report.rejected_rows
    parts = [
        f"<b>{report.kept_rows:,}</b> kept · <b>{report.rejected_rows:,}</b> rejected"
        + (f" ({report.kept_rows / total:.0%} kept)" if total else ""),
        f"<b>{_number(report.per_kept_row('completion_tokens'))}</b> output tokens per kept row",
    ]
    if usage.get("candidates"):  # texts the model generated (sampling.candidates: several per checked request)
        parts.append(f"<b>{_number(report.per_kept_row('candidates'))}</b> candidates per kept row")
    parts.append(
        f"{usage.get('calls', 0):,} LLM calls · {usage.get('reused', 0):,} reused · "
        f"{usage.get('failed_calls', 0):,} failed"
    )
    if usage.get("generate_s"):
        parts.append(f"{usage.get('completion_tokens', 0) / usage['generate_s']:.1f} output tokens/s")
    return " · ".join(parts)


def _sample_table(samples: list[Sample], *, with_language: bool) -> str:
    """Samples as a table: (language,) generated text, source with its detail line, LID score."""
    e = html.escape
    rows = "".join(
        "<tr>"
        + (f"<td>{e(s.lang)}</td>" if with_language else "")
        + f"<td dir='auto'>{e(s.text) if s.text else '<em class=empty>(no text)</em>'}</td>"
        f"<td dir='auto'>{e(s.source)}"
        + (f"<div class=detail>{e(s.detail)}</div>" if s.detail else "")
        + f"</td><td class=num>{_number(s.lid_score, 2)}</td></tr>"
        for s in samples
    )
    return (
        "<table class=samples><colgroup>"
        + ("<col class=lang>" if with_language else "")
        + "<col class=text><col><col class=lid></colgroup><tr>"
        + ("<th>lang</th>" if with_language else "")
        + f"<th>generated text</th><th>source</th><th>LID</th></tr>{rows}</table>"
    )


def _recipe_section(report: RecipeReport, figures: list[str], notes: list[str]) -> str:
    """A recipe's section: headline, figures (their HTML), notes, kept and rejected samples, counts per language."""
    e = html.escape
    name = e(report.name)
    languages = sorted(set(report.kept) | set(report.rejected))
    counts = "".join(
        f"<tr><td>{e(lang)}</td><td>{report.kept.get(lang, 0)}</td><td>{report.rejected.get(lang, 0)}</td></tr>"
        for lang in languages
    )
    kept = "".join(
        f"<details class=language{' open' if index < OPEN_LANGUAGES else ''}><summary>{e(lang)} "
        f"<span class=sub>· {_count(report.kept[lang], 'kept row')}</span></summary>"
        f"{_sample_table(samples, with_language=False)}</details>"
        for index, (lang, samples) in enumerate(sorted(report.kept_samples.items()))
    )
    rejected = "".join(
        f"<h4><code>{e(reason)}</code> <span class=sub>· {_count(count, 'row')}</span></h4>"
        + _sample_table(report.rejected_samples.get(reason, []), with_language=True)
        for reason, count in sorted(report.reasons.items(), key=lambda item: -item[1])
    )
    return (
        f"<section id='{name}'><h2>{name} <span class='status {e(report.status)}'>{e(report.status)}</span></h2>"
        f"<p class=sub>model <code>{e(report.model)}</code>"
        + (f" · finished {e(report.finished_at)}" if report.finished_at else "")
        + f"</p><p class=headline>{_headline(report)}</p>"
        f"<div class=figures>{''.join(figures)}</div>"
        + (f"<ul class=notes>{''.join(f'<li>{e(note)}</li>' for note in notes)}</ul>" if notes else "")
        + f"<details open><summary>Kept rows: the first {KEPT_SAMPLES_PER_LANGUAGE} of each language</summary>"
        + (kept or "<p>No kept rows.</p>")
        + f"</details><details open><summary>Rejected rows: the first {REJECTED_SAMPLES_PER_REASON} of each reason"
        "</summary>" + (rejected or "<p>No rejected rows.</p>") + "</details>"
        "<details><summary>Rows per language</summary>"
        f"<table><tr><th>language</th><th>kept</th><th>rejected</th></tr>{counts}</table></details></section>"
    )


def _overview(reports: dict[str, RecipeReport]) -> str:
    """One table row per recipe, linking to its section."""
    e = html.escape
    rows = "".join(
        f"<tr><td><a href='#{e(r.name)}'>{e(r.name)}</a></td><td>{e(r.status)}</td><td class=num>{r.kept_rows:,}</td>"
        f"<td class=num>{r.rejected_rows:,}</td><td class=num>{_number(r.per_kept_row('completion_tokens'))}</td>"
        f"<td class=num>{r.usage.get('calls', 0):,}</td><td class=num>{r.usage.get('reused', 0):,}</td></tr>"
        for r in reports.values()
    )
    return (
        "<table><tr><th>recipe</th><th>status</th><th>kept</th><th>rejected</th><th>output tokens per kept row</th>"
        f"<th>LLM calls</th><th>reused</th></tr>{rows}</table>"
    )


def write_report(out: Path | str) -> Path:
    """Write ``OUT/report/index.html``, one self-contained page (plotly.js inline, no other files); returns its path."""
    from plotly.offline import get_plotlyjs

    out = Path(out)
    reports = report_data(out)
    sections: list[str] = []
    figure_count = 0
    for report in reports.values():
        figures, notes = _charts(report)
        figure_count += len(figures)
        figure_html = [
            "<div class=figure>"
            + fig.to_html(
                full_html=False,
                include_plotlyjs=False,  # inlined once in <head>
                div_id=f"{report.name}-{name}",
                config=PLOT_CONFIG,
                default_height=FIGURE_HEIGHT,
                default_width="100%",
            )
            + "</div>"
            for name, fig in figures
        ]
        sections.append(_recipe_section(report, figure_html, notes))
    page = (
        "<!doctype html><html lang=en><head><meta charset='utf-8'>"
        f"<title>polysynth report: {html.escape(out.name)}</title><style>{PAGE_STYLE}</style>"
        # plotly.js reads window.PlotlyConfig when it loads (as plotly's own to_html sets it)
        f"<script>window.PlotlyConfig = {{MathJaxConfig: 'local'}};</script><script>{get_plotlyjs()}</script>"
        # the figures the page holds, for a reader (the test) to check that plotly drew every one
        f"</head><body data-figures='{figure_count}'><h1>polysynth run report</h1>"
        f"<p class=sub>{html.escape(str(out.resolve()))}</p>{_overview(reports)}{''.join(sections)}</body></html>"
    )
    index = out / "report" / "index.html"
    atomic_write_bytes(index, page.encode("utf-8"))  # a reader never sees half a page
    return index
