"""The dataset card: YAML the Hub and ``datasets`` accept, a body that says how the data was made.

``make_output`` builds a real output directory through the pipeline driver (``RecipeRun``: manifest, batch
segments, finalised shards, the card) with rows committed like ``process_batch`` commits them, so no LLM is needed.
``tests/test_hub.py`` reuses it.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import datasets
import pyarrow as pa
import pytest
import yaml

from synth.publish.card import build_card, dataset_configs, size_category, validate_card, write_output_readme
from synth.config_file import load_config
from synth.llm.base import Usage
from synth.pipeline import PROVENANCE_FIELDS, RecipeRun
from synth.recipes.sap.recipe import SapRecipe
from synth.store.manifest import Manifest
from synth.store.segments import UNIT_COLUMN, SegmentStore
from synth.store.shards import REJECTED

ROOT = Path(__file__).resolve().parents[1]
SAP_SCHEMA = pa.schema(list(SapRecipe.SCHEMA) + PROVENANCE_FIELDS)


def _rows(lang: str, start: int, n: int, *, reason: str | None, model: str) -> list[dict]:
    return [
        {
            "id": f"{lang}-{i}",
            "source_id": f"p{i}",
            "passage_id": f"p{i}",
            "title": f"Title {i}",
            "passage": f"An English passage number {i} about something notable.",
            "passage_lang": "en",
            "lang": lang,
            "mode": "cross-lingual",
            "summary": f"Summary {i}.",
            "query": f"Frage {i} ({lang})?",
            "reject_reason": reason,
            "lid_lang": lang,
            "lid_score": 0.9,
            "lid_agree": True,
            "recipe": "sap",
            "prompt_version": "sap-v1",
            "model": model,
            "sampling": json.dumps({"temperature": 0.0, "seed": 0}),
            "seed": 0,
            "config_hash": "x",
            "created_at": datetime(2024, 5, 1, tzinfo=timezone.utc),
        }
        for i in range(start, start + n)
    ]


def make_output(
    out: Path,
    *,
    languages: tuple[str, ...] = ("de", "hi"),
    rows: int = 5,
    rejected: int = 2,
    shard_rows: int = 3,
    batches: int = 2,
    finish: bool = True,
    model: str = "gemma-3-270m",
) -> Manifest:
    """A finished (or, with ``finish=False``, running) SAP output: ``rows`` kept rows per language and
    ``rejected`` rejected rows per language, committed in ``batches`` ledger segments, shards of ``shard_rows`` rows."""
    config = load_config(
        ROOT / "data" / "configs" / "sap.yaml",
        overrides={
            "languages": list(languages),
            "input.limit": rows + rejected,
            "engine.model": model,
            "output.dir": str(out),
            "output.shard_rows": shard_rows,
        },
    )
    store_schema = SAP_SCHEMA.append(pa.field(UNIT_COLUMN, pa.uint64()))
    with RecipeRun(config) as run:
        units = [(r, k) for batch in run.pending_batches() for r, k in zip(batch.records, batch.keys)]
        per_batch = -(-len(units) // batches)
        for start in range(0, len(units), per_batch):
            chunk = units[start : start + per_batch]
            table_rows = []
            for position, (record, key) in enumerate(chunk, start=start):
                reason = None if position < rows else "lid_mismatch"
                for lang in languages:
                    row = _rows(lang, position, 1, reason=reason, model=model)[0]
                    row.update(source_id=record["source_id"], passage_id=record["source_id"], _unit=key)
                    table_rows.append(row)
            SegmentStore(run.out, "sap").commit(
                pa.Table.from_pylist(table_rows, schema=store_schema),
                [key for _, key in chunk],
                Usage(calls=3).as_dict(),
            )
        if finish:
            run.finalize()
    return Manifest(out)


def _front(text: str) -> dict:
    return yaml.safe_load(text.split("---\n")[1])


def _infos(meta: dict) -> list[dict]:
    """``dataset_info`` is a mapping for one config and a list for several (as ``datasets`` writes it)."""
    infos = meta["dataset_info"]
    return infos if isinstance(infos, list) else [infos]


def test_local_readme_loads_every_config(tmp_path):
    manifest = make_output(tmp_path, rows=5, rejected=2)
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert validate_card(readme) == []
    meta = _front(readme)
    assert [c["config_name"] for c in meta["configs"]] == ["sap-de", "sap-hi", "sap-rejected"]
    # the committed generation's exact files, so a reader never mixes two finalizes
    de_shards = [s["path"] for s in manifest.recipes["sap"]["shards"] if s["group"] == "de"]
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": de_shards}]
    assert len(de_shards) == 2 and all(p.startswith("sap/de/train-") for p in de_shards)
    infos = {i["config_name"]: i for i in _infos(meta)}
    assert infos["sap-de"]["splits"][0]["num_examples"] == 5
    assert infos["sap-rejected"]["splits"][0]["num_examples"] == 4
    assert "reject_reason" in [f["name"] for f in infos["sap-rejected"]["features"]]
    assert "reject_reason" not in [f["name"] for f in infos["sap-de"]["features"]]
    assert meta["language"] == ["de", "en", "hi"]  # target languages plus the passages' English
    assert meta["license"] == "cc-by-sa-4.0"
    assert meta["task_categories"] == ["text-retrieval"]
    assert meta["size_categories"] == ["n<1K"]
    assert meta["language_creators"] == ["machine-generated"]
    # datasets reads the README's configs and dataset_info (features, verified row counts) from OUT itself
    de = datasets.load_dataset(str(tmp_path), "sap-de", split="train", cache_dir=str(tmp_path / ".cache"))
    assert sorted(de["id"]) == [f"de-{i}" for i in range(5)]
    assert de.features["created_at"] == datasets.Value("timestamp[us, tz=UTC]")
    bad = datasets.load_dataset(str(tmp_path), "sap-rejected", split="train", cache_dir=str(tmp_path / ".cache"))
    assert set(bad["reject_reason"]) == {"lid_mismatch"} and len(bad) == 4
    assert manifest.recipes["sap"]["status"] == "complete"


def test_card_body_provenance_licensing_citations(tmp_path):
    manifest = make_output(tmp_path, languages=("de",), rows=3, rejected=1)
    text = str(build_card(tmp_path, manifest, include_rejected=False, repo_id="org/polysynth-sap"))
    assert str(tmp_path) not in text  # no local paths in a published card
    assert 'load_dataset("org/polysynth-sap", "sap-de", split="train")' in text
    assert "`gemma-3-270m`" in text and "`sap-v1`" in text
    assert "Gemma Terms of Use" in text and "CC BY-SA 4.0" in text
    assert "temperature 0.0" in text and "mode cascade, threshold 0.5" in text
    assert "`wiki_passages.jsonl`" in text
    assert "| de | 3 | 1 |" in text  # per-language kept/rejected
    assert "Reject reasons: `lid_mismatch` 1" in text
    assert "arXiv:2311.05800" in text and "@inproceedings{whitehouse-etal-2022-entitycs" not in text
    meta = _front(text)
    assert [c["config_name"] for c in meta["configs"]] == ["sap-de"]
    assert [i["config_name"] for i in _infos(meta)] == ["sap-de"]
    assert "rejected" not in text.split("## How the data was made")[0].lower()


def test_card_is_deterministic_and_written_atomically(tmp_path):
    manifest = make_output(tmp_path, languages=("de",), rows=2, rejected=0)
    first = (tmp_path / "README.md").read_bytes()
    assert str(tmp_path).encode() not in first  # not even locally: OUT may be uploaded by other means
    write_output_readme(tmp_path, manifest)
    assert (tmp_path / "README.md").read_bytes() == first
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]
    assert dataset_configs(manifest) == [
        {"config_name": "sap-de", "data_files": [{"split": "train", "path": [s["path"] for s in manifest.recipes["sap"]["shards"]]}]}
    ]


def test_model_license_follows_the_model(tmp_path):
    manifest = make_output(tmp_path, languages=("de",), rows=2, rejected=0, model="Qwen2.5-0.5B")
    text = str(build_card(tmp_path, manifest))
    assert "Gemma" not in text.split("## Licensing")[1].split("## Limitations")[0]
    assert "`Qwen2.5-0.5B`" in text and "that model's license" in text


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: m.update(task_categories=["conversational"]), "task_categories"),
        (lambda m: m.update(language=["xx-notalang"]), "language"),
        (lambda m: m.update(size_categories=["tiny"]), "size_categories"),
        (lambda m: m["configs"][0].pop("config_name"), "config_name"),
        (lambda m: _infos(m)[0].update(config_name="other"), "dataset_info names"),
        (lambda m: m.pop("license"), "license"),
    ],
)
def test_validate_card_finds_problems(tmp_path, change, problem):
    manifest = make_output(tmp_path, languages=("de", "hi"), rows=2, rejected=0)
    text = str(build_card(tmp_path, manifest))
    meta = _front(text)
    change(meta)
    broken = "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n" + text.split("---\n", 2)[2]
    assert any(problem in p for p in validate_card(broken))


def test_size_categories():
    assert [size_category(n) for n in (0, 999, 1000, 250_000, 5 * 10**9)] == [
        "n<1K", "n<1K", "1K<n<10K", "100K<n<1M", "1B<n<10B",
    ]
