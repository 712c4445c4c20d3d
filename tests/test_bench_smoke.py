"""Fast checks of the benchmark harness (no engine is started; the benchmarks themselves run with ``python -m bench``)."""

from __future__ import annotations

import json

import pytest

from bench import __main__ as bench_main
from bench.common import Result, append_results, machine


def test_unknown_benchmark_is_refused(capsys):
    with pytest.raises(SystemExit):
        bench_main.main(["--only", "nope", "--no-write"])
    assert "unknown benchmark" in capsys.readouterr().err


def test_results_are_appended_as_dated_sections(tmp_path):
    path = tmp_path / "RESULTS.md"
    result = Result("x", "X bench")
    result.goal("ratio", 0.97, 0.95)
    result.add("tokens/s", 12.5)
    info = machine()
    append_results([result], info, 1.0, [], path)
    append_results([result], info, 2.0, ["--scale", "2"], path)
    text = path.read_text()
    assert sum(line.startswith("## ") for line in text.splitlines()) == 2 and "scale 2" in text
    assert "ratio: 0.97 (goal ≥ 0.95) → PASS" in text
    assert f"{info['cores']} cores" in text


def test_lid_corpus_has_short_and_long_real_texts():
    from bench.lid import SHORT, corpus

    pairs = corpus()
    short = [t for t, _ in pairs if len(t) < SHORT]
    assert len(short) > 500 and len(pairs) - len(short) > 500
    assert len({lang for _, lang in pairs}) >= 15


def test_generated_sentences_have_unique_ids(tmp_path):
    from bench.shards import make_sentences

    path = tmp_path / "s.jsonl"
    make_sentences(path, 1000)
    ids = [json.loads(line)["sentence_id"] for line in path.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 1000


def test_peer_job_has_the_recipes_prompts(tmp_path):
    from bench.common import sap_config
    from bench.peers import SUMMARY_MARK, build_job
    from synth.recipes.sap.recipe import SapRecipe

    config = sap_config(2, ["de", "hi"], tmp_path / "out")
    recipe = SapRecipe(config, None, None)
    records = [r for _, r in zip(range(2), recipe.read_records())]
    job = build_job(config, records, tmp_path)
    assert job["summary_prompts"] == [recipe.summary_request(r).prompt for r in records]
    assert [q["lang"] for q in job["queries"]] == ["de", "de", "hi", "hi"]
    first = job["queries"][0]
    assert first["prompt"].replace(SUMMARY_MARK, "S") == recipe.query_request(records[0], "S", "de").prompt
    assert job["summary_sampling"]["stop"] == ["\n"] and job["engine"]["enable_prefix_caching"]


def test_gpu_device_is_refused_without_cuda(capsys):
    if bench_main.cuda_problem() is None:
        pytest.skip("this machine has CUDA")
    assert bench_main.main(["--device", "gpu", "--no-write"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs a CUDA GPU" in err
