"""Run summaries as text: the markdown artifact of a flow run and the CLI's closing table."""

from __future__ import annotations

from synth.pipeline import RunSummary


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
    if summary.reject_reasons:
        lines += ["", "Reject reasons: " + ", ".join(f"{k} {v}" for k, v in summary.reject_reasons.items())]
    return "\n".join(lines)


# -- the HTML run report -------------------------------------------------------------------------

TEXT_COLUMNS = {"sap": "query", "entitycs": "cs_sentence", "cod": None}


def _read_rows(out, manifest, recipe: str, columns: list[str]):
    """Kept and rejected rows of a recipe as one pyarrow table with only ``columns`` (+ ``kept``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for shard in manifest.recipes[recipe].get("shards", []):
        path = out / shard["path"]
        available = pq.read_schema(path).names
        table = pq.read_table(path, columns=[c for c in columns if c in available])
        for column in columns:
            if column not in table.column_names:
                table = table.append_column(column, pa.nulls(table.num_rows, pa.string()))
        kept = shard["group"] != "_rejected"
        tables.append(table.select(columns).append_column("kept", pa.array([kept] * table.num_rows)))
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


def report_data(out) -> dict:
    """The numbers the report shows, read from the manifest and the shards (tests compare them)."""
    from pathlib import Path

    from synth.store.manifest import Manifest
    from synth.store.segments import SegmentStore

    out = Path(out)
    manifest = Manifest(out)
    data: dict = {"recipes": {}}
    for recipe, state in sorted(manifest.recipes.items()):
        text_column = TEXT_COLUMNS.get(recipe)
        columns = ["lang", "reject_reason", "lid_score"] + ([text_column] if text_column else [])
        table = _read_rows(out, manifest, recipe, columns)
        rows = table.to_pylist() if table is not None else []
        kept: dict[str, int] = {}
        rejected: dict[str, int] = {}
        reasons: dict[str, int] = {}
        for row in rows:
            bucket = kept if row["kept"] else rejected
            bucket[row["lang"]] = bucket.get(row["lang"], 0) + 1
            if not row["kept"]:
                reasons[row["reject_reason"]] = reasons.get(row["reject_reason"], 0) + 1
        # per ledger segment (a committed batch), oldest first: what the model spent on it
        store = SegmentStore(out, recipe)
        batches = [store.usage(sid) for sid in store.segments()]
        data["recipes"][recipe] = {
            "status": state["status"],
            "kept": kept,
            "rejected": rejected,
            "reasons": reasons,
            "lid_scores": [r["lid_score"] for r in rows if r["lid_score"] is not None],
            "lengths": [len(r[text_column].split()) for r in rows if text_column and r.get(text_column)],
            "batch_tokens": [b.get("completion_tokens", 0) for b in batches],
            "batch_wall_s": [b.get("generate_s", 0.0) for b in batches],
            "usage": state.get("totals", {}).get("usage", {}),
        }
    return data


def write_report(out):
    """Write ``OUT/report/index.html`` with PNG plots; returns the HTML path."""
    import html
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    target = out / "report"
    target.mkdir(parents=True, exist_ok=True)
    data = report_data(out)
    sections = []
    for recipe, info in data["recipes"].items():
        images = []

        def save(fig, name: str) -> None:
            fig.tight_layout()
            fig.savefig(target / name, dpi=90)
            plt.close(fig)
            images.append(name)

        langs = sorted(set(info["kept"]) | set(info["rejected"]))
        fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(langs) + 2), 3))
        ax.bar(langs, [info["kept"].get(l, 0) for l in langs], label="kept", color="#2a9d8f")
        ax.bar(langs, [info["rejected"].get(l, 0) for l in langs], bottom=[info["kept"].get(l, 0) for l in langs],
               label="rejected", color="#e76f51")
        ax.set_title(f"{recipe}: rows per language")
        ax.tick_params(axis="x", rotation=90)
        ax.legend()
        save(fig, f"{recipe}-rows.png")
        if info["reasons"]:
            fig, ax = plt.subplots(figsize=(5, 3))
            ax.barh(list(info["reasons"]), list(info["reasons"].values()), color="#e76f51")
            ax.set_title(f"{recipe}: reject reasons")
            save(fig, f"{recipe}-reasons.png")
        if info["lid_scores"]:
            fig, ax = plt.subplots(figsize=(5, 3))
            ax.hist(info["lid_scores"], bins=20, range=(0, 1), color="#264653")
            ax.set_title(f"{recipe}: fastText score of the detected language")
            save(fig, f"{recipe}-lid.png")
        if info["lengths"]:
            fig, ax = plt.subplots(figsize=(5, 3))
            ax.hist(info["lengths"], bins=20, color="#8ab17d")
            ax.set_title(f"{recipe}: length in words")
            save(fig, f"{recipe}-lengths.png")
        if any(info["batch_tokens"]):
            fig, ax = plt.subplots(figsize=(5, 3))
            rates = [t / w if w else 0 for t, w in zip(info["batch_tokens"], info["batch_wall_s"])]
            ax.plot(range(len(rates)), rates, marker="o", color="#264653")
            ax.set_xlabel("batch")
            ax.set_ylabel("output tokens/s")
            ax.set_title(f"{recipe}: throughput per batch")
            save(fig, f"{recipe}-throughput.png")
        rows = "".join(
            f"<tr><td>{html.escape(l)}</td><td>{info['kept'].get(l, 0)}</td><td>{info['rejected'].get(l, 0)}</td></tr>"
            for l in langs
        )
        usage = info["usage"]
        sections.append(
            f"<h2>{html.escape(recipe)} <small>({html.escape(info['status'])})</small></h2>"
            f"<p>LLM calls {usage.get('calls', 0)} · prompt tokens {usage.get('prompt_tokens', 0)} · "
            f"completion tokens {usage.get('completion_tokens', 0)}</p>"
            f"<table><tr><th>language</th><th>kept</th><th>rejected</th></tr>{rows}</table>"
            + "".join(f'<img src="{name}" alt="{name}">' for name in images)
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>polysynth run report</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}img{max-width:48%;margin:4px}</style>"
        f"</head><body><h1>polysynth run report</h1><p>{html.escape(str(out))}</p>{''.join(sections)}</body></html>"
    )
    index = target / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
