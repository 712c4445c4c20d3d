"""The dataset card (``README.md``) of an output directory, built with huggingface_hub's card tools.

The YAML header is what the Hub and ``datasets`` read: ``configs`` (one per ``<recipe>-<lang>``, plus
``<recipe>-rejected`` when rejected rows are included) with ``data_files`` globs, ``dataset_info`` with each
config's features and row counts, and the Hub's search metadata (language, license, task categories, ...).
The body says how the data was made, from the manifest's run configs and the provenance columns of the shards.

The card is a pure function of the manifest and the shards (no clock, no absolute paths), so publishing the
same output twice produces the same bytes and a second push has nothing to commit.

Usage::

    from synth.publish.card import build_card, validate_card, write_output_readme
    from synth.store.manifest import Manifest

    manifest = Manifest(out)
    write_output_readme(out, manifest)            # OUT/README.md, rejected configs included (the pipeline calls this)
    card = build_card(out, manifest, include_rejected=False, repo_id="org/name")   # the card a push uploads
    assert validate_card(str(card)) == []         # offline checks; the Hub re-validates on commit
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.parquet as pq
import yaml
from huggingface_hub import DatasetCard, DatasetCardData

from synth.recipes import recipe_class
from synth.recipes.base import RecipeCard
from synth.store.location import Location
from synth.store.manifest import Manifest
from synth.store.shards import REJECTED

LICENSE = "cc-by-sa-4.0"
# The Hub's official task categories (its /api/validate-yaml warns on anything else; "conversational" was
# dropped in 2024). Source: huggingface.js packages/tasks, as quoted by the Hub's metadata warning.
HUB_TASK_CATEGORIES = frozenset(
    """text-classification token-classification table-question-answering question-answering zero-shot-classification
    translation summarization feature-extraction text-generation text2text-generation fill-mask sentence-similarity
    text-to-speech text-to-audio automatic-speech-recognition audio-to-audio audio-classification
    voice-activity-detection depth-estimation image-classification object-detection image-segmentation text-to-image
    image-to-text image-to-image image-to-video unconditional-image-generation video-classification
    reinforcement-learning robotics tabular-classification tabular-regression tabular-to-text table-to-text
    multiple-choice text-retrieval time-series-forecasting text-to-video image-text-to-text visual-question-answering
    document-question-answering zero-shot-image-classification graph-ml mask-generation zero-shot-object-detection
    text-to-3d image-to-3d image-feature-extraction other""".split()
)

def recipe_card(recipe: str) -> RecipeCard:
    """The card section a recipe declares (``Recipe.card``); ConfigError for a recipe that is not installed."""
    return recipe_class(recipe).card


def config_name(recipe: str, group: str) -> str:
    """``sap-de`` for kept rows, ``sap-rejected`` for the ``_rejected`` group."""
    return f"{recipe}-rejected" if group == REJECTED else f"{recipe}-{group}"


def published_groups(manifest: Manifest, *, include_rejected: bool) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``{recipe: {group: [shard entries]}}`` for every recipe with finalised shards, rejected optional."""
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for recipe, state in sorted(manifest.recipes.items()):
        for shard in state.get("shards", []):
            if shard["group"] == REJECTED and not include_rejected:
                continue
            groups.setdefault(recipe, {}).setdefault(shard["group"], []).append(shard)
    # Languages in order, the rejected rows last.
    return {
        recipe: dict(sorted(by_group.items(), key=lambda kv: (kv[0] == REJECTED, kv[0])))
        for recipe, by_group in groups.items()
    }


def dataset_configs(manifest: Manifest, *, include_rejected: bool = True) -> list[dict[str, Any]]:
    """One config per ``<recipe>-<lang>`` (and ``<recipe>-rejected``) found in the manifest's shards."""
    return [
        {
            "config_name": config_name(recipe, group),
            # The exact files of the committed shard generation: a reader never sees a finalize half-done.
            "data_files": [{"split": "train", "path": [shard["path"] for shard in shards]}],
        }
        for recipe, by_group in published_groups(manifest, include_rejected=include_rejected).items()
        for group, shards in by_group.items()
    ]


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` bucket for a row count."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    return next((label for bound, label in bounds if rows < bound), "1B<n<10B")


def _public(value: Any) -> Any:
    """Config values as they may be published: absolute local paths reduced to their file name."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_public(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return PurePosixPath(value).name
    return value


def public_config(config: dict[str, Any]) -> dict[str, Any]:
    """A run config without the local set-up: paths become file names; output, runner and endpoint URLs
    (internal host names) are dropped."""
    public = {k: v for k, v in config.items() if k not in ("output", "runner")}
    if isinstance(public.get("engine"), dict):
        public["engine"] = {k: v for k, v in public["engine"].items() if k != "base_urls"}
    return _public(public)


@dataclass
class _Provenance:
    """What the first row group of each shard group says about how rows were made."""

    models: set[str]
    prompt_versions: set[str]
    source_languages: set[str]


def _provenance(out: Location, recipe: str, by_group: dict[str, list[dict[str, Any]]]) -> _Provenance:
    info = recipe_card(recipe)
    found = _Provenance(set(), set(), set(info.fixed_source_languages))
    for shards in by_group.values():
        handle = out.parquet_file(shards[0]["path"])
        if handle.metadata.num_row_groups == 0:
            continue
        columns = ("model", "prompt_version", info.source_language_column)
        wanted = [c for c in columns if c and c in handle.schema_arrow.names]
        sample = handle.read_row_group(0, columns=wanted)
        if "model" in wanted:  # a model given as a local path is published by its folder name
            found.models.update(_public(v) for v in sample.column("model").to_pylist() if v)
        if "prompt_version" in wanted:
            found.prompt_versions.update(v for v in sample.column("prompt_version").to_pylist() if v)
        if info.source_language_column and info.source_language_column in wanted:
            found.source_languages.update(v for v in sample.column(info.source_language_column).to_pylist() if v)
    return found


def _dataset_infos(out: Location, published: dict[str, dict[str, list[dict[str, Any]]]]) -> Any:
    """``datasets``' per-config info (features from the Parquet schema, exact row counts) for ``dataset_info``."""
    from datasets import DatasetInfo, Features, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict

    infos = DatasetInfosDict()
    for recipe, by_group in published.items():
        for group, shards in by_group.items():
            name = config_name(recipe, group)
            schema = out.read_schema(shards[0]["path"])
            # num_bytes is the uncompressed size (what datasets reports); num_examples is checked on load.
            num_bytes = sum(
                meta.row_group(i).total_byte_size
                for meta in (out.parquet_file(s["path"]).metadata for s in shards)
                for i in range(meta.num_row_groups)
            )
            rows = sum(s["rows"] for s in shards)
            infos[name] = DatasetInfo(
                config_name=name,
                features=Features.from_arrow_schema(schema.remove_metadata()),
                splits=SplitDict({"train": SplitInfo(name="train", num_bytes=num_bytes, num_examples=rows)}),
                download_size=sum(s["bytes"] for s in shards),
                dataset_size=num_bytes,
            )
    return infos


def _model_license(models: set[str]) -> str:
    llm_models = sorted(m for m in models if m != "none")
    if not llm_models:
        return "No language model was involved in generating these rows."
    names = ", ".join(f"`{m}`" for m in llm_models)
    if all("gemma" in m.lower() for m in llm_models):
        return (
            f"Rows were generated with {names}, a Gemma model, provided under the Gemma Terms of Use "
            "(https://ai.google.dev/gemma/terms); Google claims no rights in outputs, but using them must follow the "
            "Gemma Prohibited Use Policy (https://ai.google.dev/gemma/prohibited_use_policy)."
        )
    return f"Rows were generated with {names}; the terms of that model's license apply to its outputs as well."


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    align = ["---"] + ["---:" if all(isinstance(r[i], int) for r in rows) else "---" for i in range(1, len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _recipe_section(recipe: str, state: dict[str, Any], provenance: _Provenance) -> list[str]:
    info = recipe_card(recipe)
    config = public_config(state.get("config", {}))
    totals = state.get("totals", {})
    kept, rejected = totals.get("kept", {}), totals.get("rejected", {})
    sampling = config.get("sampling", {})
    lid = config.get("lid", {})
    input_ = config.get("input", {})
    source = (input_.get("hf") or {}).get("name") or input_.get("path") or "?"
    lines = [f"### `{recipe}`: {info.title}", ""]
    if info.method:
        lines += [info.method, ""]
    models = sorted(m for m in provenance.models if m != "none")
    lines += [
        f"- **Model:** {', '.join(f'`{m}`' for m in models) or 'none (no language model was used)'}"
        f" · **prompt version:** {', '.join(f'`{v}`' for v in sorted(provenance.prompt_versions)) or '?'}",
        *(["- **Sampling:** " + ", ".join(f"{k} {v}" for k, v in sorted(sampling.items()))] if models else []),
        f"- **Language identification:** mode {lid.get('mode', '?')}, threshold {lid.get('threshold', '?')}, "
        f"script check {'on' if lid.get('script_check', True) else 'off'}"
        + (f", per-language thresholds {lid['per_language']}" if lid.get("per_language") else ""),
        f"- **Input:** `{source}` · **status:** {state.get('status', '?')}"
        f" · **config hash:** `{state.get('config_hash', '?')}`"
        + (f" · **finished:** {state['finished_at']}" if state.get("finished_at") else ""),
    ]
    if info.sources:
        lines.append(f"- **Sources:** {info.sources}")
    options = config.get(recipe)
    if options:
        lines.append("- **Recipe options:** " + ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(options.items())))
    langs = sorted(set(kept) | set(rejected))
    counts = [[lang, kept.get(lang, 0), rejected.get(lang, 0)] for lang in langs]
    lines += ["", *_table(["language", "kept", "rejected"], counts)]
    reasons = totals.get("reject_reasons") or {}
    if reasons:
        lines += ["", "Reject reasons: " + ", ".join(f"`{k}` {v}" for k, v in reasons.items())]
    return lines + [""]


def build_card(
    out: Path, manifest: Manifest, *, include_rejected: bool = True, repo_id: str | None = None
) -> DatasetCard:
    """The dataset card for the recipes of ``manifest`` that have shards.

    ``include_rejected`` adds ``<recipe>-rejected`` configs; ``repo_id`` is used in the loading example
    (a placeholder path otherwise).
    """
    out = Location(out)
    published = published_groups(manifest, include_rejected=include_rejected)
    provenance = {recipe: _provenance(out, recipe, by_group) for recipe, by_group in published.items()}
    # The Hub's `language` takes ISO 639 codes only: a regional group such as "pt-br" is listed as "pt".
    languages = sorted(
        {g.split("-")[0] for by_group in published.values() for g in by_group if g != REJECTED}
        | {lang.split("-")[0] for p in provenance.values() for lang in p.source_languages}
    )
    rows = sum(s["rows"] for by_group in published.values() for shards in by_group.values() for s in shards)
    infos = [recipe_card(r) for r in published]
    data = DatasetCardData(
        language=languages,
        license=LICENSE,
        language_creators=["machine-generated"],
        annotations_creators=["machine-generated"],
        multilinguality=["multilingual"],
        size_categories=[size_category(rows)],
        source_datasets=sorted({i.source_dataset for i in infos}),
        task_categories=sorted({t for i in infos for t in i.task_categories}),
        pretty_name="polysynth: " + ", ".join(i.title for i in infos) if infos else "polysynth output",
        tags=sorted({"synthetic", "polysynth"} | {t for i in infos for t in i.tags}),
        configs=dataset_configs(manifest, include_rejected=include_rejected),
    )
    _dataset_infos(out, published).to_dataset_card_data(data)
    # A local card names no absolute path: the directory may be uploaded by other means.
    target = repo_id or f"path/to/{out.url.rstrip('/').rsplit('/', 1)[-1]}"
    first = next(iter(data.configs), {"config_name": "<recipe>-<lang>"})["config_name"]
    config_rows = [
        [f"`{config_name(recipe, group)}`", group, sum(s["rows"] for s in shards), len(shards)]
        for recipe, by_group in published.items()
        for group, shards in by_group.items()
    ]
    all_models = set().union(*(p.models for p in provenance.values())) if provenance else set()
    llm_models = sorted(m for m in all_models if m != "none")
    share_alike = sorted({src for i in infos for src in i.share_alike_sources})
    body = [
        f"# {data.pretty_name}",
        "",
        "Synthetic multilingual training data made with polysynth, which re-implements published data-synthesis "
        "methods as batch pipelines over an LLM. Every row carries its provenance: `recipe`, `prompt_version`, "
        "`model`, `sampling` (JSON), `seed`, `config_hash` and `created_at`, plus the language-identification "
        "verdict (`lid_lang`, `lid_score`, `lid_agree`).",
        "",
        "## Configurations",
        "",
        *_table(["config", "group", "rows", "files"], config_rows),
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'ds = load_dataset("{target}", "{first}", split="train")',
        "```",
        "",
    ]
    if include_rejected:
        body += [
            "`<recipe>-rejected` configs hold the rows the filters rejected, with a `reject_reason` column; they are "
            "published for analysis, not for training.",
            "",
        ]
    body += ["## How the data was made", ""]
    for recipe in published:
        body += _recipe_section(recipe, manifest.recipes[recipe], provenance[recipe])
    body += [
        "## Licensing",
        "",
        "The data is released under CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/): it is derived "
        f"from CC BY-SA sources ({', '.join(share_alike) or 'see above'}), and ShareAlike requires derived data to "
        "keep that license. Give attribution to those sources as listed above.",
        "",
        _model_license(all_models),
        "",
        "## Limitations",
        "",
        "- No row was checked by a person: rows can be wrong, unnatural, or unfaithful to their source even when "
        "they passed the filters.",
        "- Filtering relies on automatic language identification (fastText lid.176; CLD3 or lingua for the languages "
        "fastText is weak on, such as Swahili, Indonesian and Yoruba; langdetect as a second opinion); "
        "short texts, closely related languages and code-switched text are where it errs most.",
        *(
            [
                f"- Texts were written by {', '.join(llm_models)}, which may be far weaker than the models of the "
                "original papers (e.g. PaLM 2 for SWIM-IR): expect lower quality than the published datasets."
            ]
            if llm_models
            else []
        ),
        *(f"- {i.limitation}" for i in infos if i.limitation),
        "- Source texts carry their own biases (e.g. Wikipedia's coverage, SGD's US-centric services), which the "
        "generated data inherits.",
        "",
    ]
    citations = [i.citation for i in infos if i.citation]
    if citations:
        body += ["## Citation", "", "If you use this data, cite the method papers:", "", "```bibtex"]
        body += ["\n\n".join(citations), "```", ""]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def write_output_readme(out: Location | Path, manifest: Manifest) -> str:
    """Write ``OUT/README.md`` (atomically), rejected configs included, so ``load_dataset(OUT, "sap-de")`` works."""
    location = Location(out)
    location.write_bytes("README.md", str(build_card(location, manifest, include_rejected=True)).encode("utf-8"))
    return location.display("README.md")


@lru_cache(maxsize=1)
def _vocabularies() -> dict[str, Any]:
    """The metadata vocabularies ``datasets`` ships (languages, creators, multilinguality, size categories)."""
    folder = resources.files("datasets.utils.resources")

    def load(name: str) -> Any:
        return json.loads(folder.joinpath(name).read_text(encoding="utf-8"))

    return {
        "languages": set(load("languages.json")),
        "creators": load("creators.json"),
        "multilinguality": set(load("multilingualities.json")),
        "size_categories": set(load("size_categories.json")),
    }


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def validate_card(content: str) -> list[str]:
    """Check a dataset card offline; returns the problems found (empty when valid).

    ``DatasetCard.validate()`` posts to the Hub's ``/api/validate-yaml`` and so needs the network; this checks
    what can be checked locally: the YAML parses into ``DatasetCardData``; language, creators, multilinguality
    and size category are in the vocabularies ``datasets`` ships; task categories are the Hub's; ``configs``
    and ``dataset_info`` parse the way ``datasets`` parses them and name the same configs. License ids are
    left to the Hub.
    """
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    try:
        card = DatasetCard(content)
    except (ValueError, yaml.YAMLError) as exc:
        return [f"metadata does not parse: {exc}"]
    data, vocab, problems = card.data, _vocabularies(), []
    checks = [
        ("language", vocab["languages"]),
        ("language_creators", set(vocab["creators"]["language"])),
        ("annotations_creators", set(vocab["creators"]["annotations"])),
        ("multilinguality", vocab["multilinguality"]),
        ("size_categories", vocab["size_categories"]),
        ("task_categories", HUB_TASK_CATEGORIES),
    ]
    for key, allowed in checks:
        bad = [v for v in _as_list(data.get(key)) if v not in allowed]
        if bad:
            problems.append(f"{key}: not a known value: {', '.join(map(str, bad))}")
    if not data.get("license"):
        problems.append("license: missing")
    try:
        configs = MetadataConfigs.from_dataset_card_data(data)
        infos = DatasetInfosDict.from_dataset_card_data(data)
    except (ValueError, TypeError, KeyError) as exc:
        return problems + [f"configs/dataset_info: {exc}"]
    if set(infos) != set(configs):
        problems.append(f"dataset_info names {sorted(infos)} but configs are {sorted(configs)}")
    return problems
