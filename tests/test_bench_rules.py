"""The benchmarks' rules as pure functions: the load rule (bench.common.verdict) and the peers' consistency check.

Fast: no engine, no child process. Each test asserts one outcome.
"""

from __future__ import annotations

import copy

import pytest

from bench.common import INCONCLUSIVE_DRIFT, Repeat, baseline_drift, median, verdict
from bench.peers import check_children, interleaved, repeat_of


def test_drift_is_relative_to_the_faster_baseline():
    assert baseline_drift(10.0, 12.0) == pytest.approx(0.2)


def test_a_repeat_within_the_limit_is_conclusive():
    assert not Repeat(1.0, 10.0, 11.0).inconclusive


def test_a_repeat_whose_baselines_drift_more_than_the_limit_is_inconclusive():
    assert Repeat(1.0, 10.0, 10.0 * (1 + INCONCLUSIVE_DRIFT) + 0.01).inconclusive


def test_verdict_is_the_median_of_the_conclusive_repeats():
    repeats = [Repeat(1.10, 10, 10.5), Repeat(5.0, 10, 20), Repeat(1.02, 10, 10), Repeat(1.06, 10, 10.2)]
    v = verdict(repeats)
    assert (v.median, v.low, v.high, v.inconclusive_repeats, v.inconclusive) == (pytest.approx(1.06), 1.02, 1.10, [2], False)


def test_verdict_is_inconclusive_without_a_majority_of_conclusive_repeats():
    repeats = [Repeat(1.0, 10, 10), Repeat(1.0, 10, 13), Repeat(1.0, 13, 10)]
    assert verdict(repeats).inconclusive


def test_an_inconclusive_verdict_has_no_figure():
    v = verdict([Repeat(0.5, 10, 20)])
    assert (v.median, v.spread) == (None, None) and "inconclusive" in v.describe()


def test_spread_is_max_minus_min_over_median():
    assert verdict([Repeat(0.9, 1, 1), Repeat(1.0, 1, 1), Repeat(1.1, 1, 1)]).spread == pytest.approx(0.2)


def test_median_of_an_even_count_is_the_mean_of_the_middle_two():
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_sides_are_interleaved_with_alternating_order():
    assert [s[0] for _, s in interleaved(3)] == list("pcddcppcd")


# -- consistency of the peers' children ----------------------------------------------------------------------
CALLS = [{"prompts": 2, "prompt_tokens": 2400, "cached_tokens": 896, "completion_tokens": 80, "generate_s": 30.0},
         {"prompts": 4, "prompt_tokens": 5000, "cached_tokens": 2688, "completion_tokens": 90, "generate_s": 40.0}]
SETTINGS = {"model": "/m", "dtype": "torch.bfloat16", "max_model_len": 4096, "enforce_eager": True, "seed": 0,
            "enable_prefix_caching": True, "block_size": 128, "kv_cache_memory_bytes": 1 << 30, "num_gpu_blocks": 455,
            "max_num_seqs": 256, "max_num_batched_tokens": 4096, "enable_chunked_prefill": True,
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": "0-1"}


def child(side: str, repeat: int = 1, framework_s: float = 75.0, raw: tuple[float, float] = (70.0, 72.0)) -> dict:
    run = lambda wall: {"wall_s": wall, "calls": copy.deepcopy(CALLS), "summaries": ["s1", "s2"], "queries": ["q"] * 4}  # noqa: E731
    return {"side": side, "repeat": repeat, "settings": dict(SETTINGS),
            "runs": {"raw A": run(raw[0]), "framework": run(framework_s), "raw B": run(raw[1])}}


def test_children_that_did_the_same_work_are_consistent():
    assert check_children([child("polysynth"), child("curator"), child("distilabel")]) == []


def test_a_framework_that_split_a_call_is_a_mismatch():
    peer = child("curator")
    calls = peer["runs"]["framework"]["calls"]
    calls[1:] = [{**calls[1], "prompts": 2, "prompt_tokens": 2500, "cached_tokens": 1344}] * 2
    assert any("framework's calls" in e for e in check_children([child("polysynth"), peer]))


def test_fewer_cached_tokens_in_the_framework_run_is_a_mismatch():
    peer = child("distilabel")
    peer["runs"]["framework"]["calls"][0]["cached_tokens"] = 0
    assert len(check_children([child("polysynth"), peer])) == 1


def test_a_frameworks_prefill_calls_are_not_work_and_more_cache_hits_are_allowed():
    poly = child("polysynth")
    calls = poly["runs"]["framework"]["calls"]
    prefill = {"prompts": 1, "prefill": True, "prompt_tokens": 900, "cached_tokens": 0, "completion_tokens": 1, "generate_s": 5.0}
    calls[:] = [prefill, {**calls[0], "cached_tokens": 2304}, prefill, {**calls[1], "cached_tokens": 4864}]
    assert check_children([poly, child("curator")]) == []


def test_a_framework_that_asks_more_answers_is_a_mismatch():
    poly = child("polysynth")
    calls = poly["runs"]["framework"]["calls"]
    calls.append({"prompts": 1, "prompt_tokens": 1300, "cached_tokens": 1280, "completion_tokens": 200, "generate_s": 9.0})
    assert any("framework's calls" in e for e in check_children([poly, child("curator")]))


def test_a_different_engine_setting_is_a_mismatch():
    peer = child("distilabel")
    peer["settings"]["max_num_seqs"] = 8
    assert check_children([child("polysynth"), peer]) == ["distilabel (repeat 1): engine setting max_num_seqs=8, polysynth has 256"]


def test_children_whose_raw_work_differs_are_a_mismatch():
    peer = child("curator")
    for phase in ("raw A", "framework", "raw B"):
        peer["runs"][phase]["calls"][0]["prompt_tokens"] = 2300
    assert any("raw calls" in e for e in check_children([child("polysynth"), peer]))


def test_the_peers_figure_is_framework_time_over_the_mean_raw_time():
    rep = repeat_of(child("polysynth", framework_s=77.0, raw=(70.0, 84.0)))
    assert (rep.ratio, rep.inconclusive) == (pytest.approx(1.0), True)


# -- prefill --------------------------------------------------------------------------------------------------
def test_best_cached_counts_whole_blocks_shared_with_an_earlier_prompt():
    from bench.prefill import best_cached

    first, second = list(range(40)), list(range(35)) + [99] * 5  # 35 shared tokens: 2 blocks of 16
    assert best_cached([first, second], 16) == 32


def test_sap_shots_keeps_the_first_n_exemplars():
    from synth.config_file import load_config
    from synth.recipes.sap.recipe import SapRecipe
    from bench.common import SAP_CONFIG

    def prefix(shots):
        config = load_config(SAP_CONFIG, recipe="sap", overrides={"sap.shots": shots})
        return SapRecipe(config, None, None).query_prefix("de")

    assert [prefix(n).count("Summary:") for n in (1, 2, 3, None)] == [1, 2, 3, 5]
