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
        f"batches {summary.batches_generated} generated / {summary.batches_total} total · wall {summary.wall_s:.1f} s",
        "",
        "| language | kept | rejected |",
        "|---|---:|---:|",
        *(f"| {lang} | {kept} | {rejected} |" for lang, kept, rejected in summary_rows(summary)),
        "",
        f"LLM calls {usage.get('calls', 0)} ({usage.get('failed_calls', 0)} failed) · "
        f"prompt tokens {usage.get('prompt_tokens', 0)} · completion tokens {tokens_out} · "
        f"output tokens/s {tokens_out / gen_s if gen_s else 0:.1f}",
    ]
    if summary.reject_reasons:
        lines += ["", "Reject reasons: " + ", ".join(f"{k} {v}" for k, v in summary.reject_reasons.items())]
    return "\n".join(lines)
