"""4. Shard store: zstd Parquet write throughput through ``synth.shards``, and peak RSS against input size.

Write throughput: SAP-shaped rows (the SAP schema plus provenance columns, real passages and questions with
their words shuffled per row so that zstd cannot just dedupe repeats) written as the pipeline does — one part
per batch through ``write_batch_parts`` (atomic rename, fsync, sha256), then ``finalize_group`` rebuilding the
final shard(s) from the parts — against bare ``pyarrow.parquet.write_table`` of the same table with zstd in one
go. MB are Arrow in-memory bytes.

Peak RSS: the EntityCS recipe with its LLM passes off (a real recipe with no engine, so the pipeline, not the LLM,
is the bottleneck) through ``run_recipe`` on a small and a large generated input (the shipped linked sentences
repeated with unique ``sentence_id``s), each in its own process; the peak is that child's ``VmHWM`` (its own
address space's high-water mark; ``ru_maxrss`` from ``wait4`` keeps the parent's RSS copied at fork, which with
a vLLM engine in the parent is GBs). Goal: the large run's peak RSS within 10 % of the small run's (no growth with input size). The
driver's duplicate-id ``seen`` set grows with the input: its size per million ids is measured here too.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import tracemalloc
from pathlib import Path

from bench.common import ORIGINAL_ENV, PASSAGES, ROOT, SENTENCES, WORK, Context, Result, log, peak_rss_of, timed

NAME = "shards"
TITLE = "4. Shard store: write throughput and peak RSS vs input size"
GOAL_RSS_GROWTH = 1.10
ROWS_PER_PART = 1024  # EntityCS's default batch of 256 sentences gives ~1,000 rows per part


def sap_table(n: int):
    """``n`` SAP-shaped rows with the pipeline's kept-row schema."""
    import datetime as dt

    import pyarrow as pa

    from bench.lid import corpus
    from synth.pipeline import PROVENANCE_FIELDS
    from synth.recipes.sap import SapRecipe

    schema = pa.schema(list(SapRecipe.SCHEMA) + PROVENANCE_FIELDS)
    schema = schema.remove(schema.get_field_index("reject_reason"))
    passages = [json.loads(line) for line in PASSAGES.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = [(t, l) for t, l in corpus() if len(t) < 200 and l != "en"]
    rng = random.Random(0)
    now = dt.datetime.now(dt.timezone.utc)
    columns: dict[str, list] = {field.name: [] for field in schema}
    for i in range(n):
        p = passages[i % len(passages)]
        words = p["text"].split()
        rng.shuffle(words)
        question, lang = questions[i % len(questions)]
        qwords = question.split()
        rng.shuffle(qwords)
        row = {
            "id": f"{i:024x}", "source_id": f"{p['id']}-{i}", "passage_id": f"{p['id']}-{i}", "title": p.get("title", ""),
            "passage": " ".join(words), "passage_lang": "en", "lang": lang, "mode": "cross-lingual",
            "summary": " ".join(words[:40]), "query": " ".join(qwords), "lid_lang": lang, "lid_score": rng.random(),
            "lid_agree": None, "recipe": "sap", "prompt_version": "sap/summary.v1@v1+sap/query_crosslingual.v1@v1",
            "model": "gemma-3-270m", "sampling": '{"max_tokens": 64, "seed": 0, "temperature": 0.0}', "seed": 0,
            "config_hash": "0123456789abcdef", "created_at": now,
        }
        for key in columns:
            columns[key].append(row[key])
    return pa.table(columns, schema=schema)


def write_throughput(ctx: Context, result: Result) -> None:
    import pyarrow.parquet as pq

    from synth.shards import ShardSpec, finalize_group, write_batch_parts

    n = ctx.n(100_000)
    log(f"shards: building {n:,} SAP-shaped rows…")
    table = sap_table(n)
    mb = table.nbytes / 1e6
    base = WORK / "shards-write"
    shutil.rmtree(base, ignore_errors=True)
    (base / "bare").mkdir(parents=True)
    # Order bare, polysynth, bare: the mean of the two bare runs brackets the polysynth run.
    bare_times = []
    poly = None
    for kind in ("bare", "polysynth", "bare"):
        if kind == "bare":
            path = base / "bare" / f"all-{len(bare_times)}.parquet"
            with timed() as t:
                pq.write_table(table, path, compression="zstd")
            bare_times.append(t.wall_s)
            bare_bytes = path.stat().st_size
        else:
            out = base / "out"
            parts = []
            with timed() as t:
                for index, start in enumerate(range(0, n, ROWS_PER_PART)):
                    parts += write_batch_parts(out, "sap", index, {"de": table.slice(start, ROWS_PER_PART)})
                with timed() as t_final:
                    shards = finalize_group(out, "sap", "de", [p["path"] for p in parts], ShardSpec(50_000, 256 * 2**20))
            poly = t
            poly_final = t_final.wall_s
            poly_bytes = sum(s["bytes"] for s in shards)
            row_groups = sum(pq.ParquetFile(out / s["path"]).num_row_groups for s in shards)
    bare_s = sum(bare_times) / len(bare_times)
    result.add("rows / Arrow MB / part size (rows)", f"{n:,} / {mb:,.1f} / {ROWS_PER_PART:,}")
    result.add("bare pyarrow write_table zstd: MB/s", mb / bare_s)
    result.add("polysynth parts + finalize: MB/s (end to end)", mb / poly.wall_s)
    result.add("polysynth: parts s / finalize s", f"{poly.wall_s - poly_final:.2f} / {poly_final:.2f}")
    result.add("polysynth / bare throughput", bare_s / poly.wall_s)
    result.add("on-disk MB: bare / polysynth shards", f"{bare_bytes / 1e6:.1f} / {poly_bytes / 1e6:.1f}")
    result.add("row groups: bare / polysynth final shards", f"{pq.ParquetFile(base / 'bare' / 'all-0.parquet').num_row_groups} / {row_groups}")
    result.notes.append(
        "polysynth writes every row twice (a durable per-batch part, then the final shard rebuilt from the parts), "
        "each file fsynced and hashed (sha256), which is the price of resumability; the bare baseline writes once."
    )
    shutil.rmtree(base, ignore_errors=True)


def make_sentences(path: Path, n: int) -> None:
    """``n`` linked sentences: the shipped ones repeated, each with a unique sentence_id."""
    lines = [json.loads(line) for line in SENTENCES.read_text(encoding="utf-8").splitlines() if line.strip()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            record = dict(lines[i % len(lines)])
            record["sentence_id"] = f"{record['sentence_id']}-r{i // len(lines)}"
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


CHILD = """
import json, sys, time
t = time.perf_counter()
from synth.config import load_config
from synth.pipeline import run_recipe
config = load_config(sys.argv[1], recipe="entitycs", overrides={"input.path": sys.argv[2], "output.dir": sys.argv[3]})
summary = run_recipe(config)
rows = sum(summary.kept.values()) + sum(summary.rejected.values())
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print("RESULT " + json.dumps({"rows": rows, "batches": summary.batches_total, "wall_s": time.perf_counter() - t,
      "vmhwm_mib": int(status["VmHWM"].split()[0]) / 1024}))
"""


def rss_growth(ctx: Context, result: Result) -> None:
    sizes = (ctx.n(5_000), ctx.n(100_000))  # 1M rows: --scale 10
    config = ROOT / "data" / "configs" / "entitycs.yaml"
    env = {**ORIGINAL_ENV, "HF_HUB_OFFLINE": "1"}
    figures = {}
    for n in sizes:
        data = WORK / "shards-rss" / f"sentences-{n}.jsonl"
        out = WORK / "shards-rss" / f"out-{n}"
        make_sentences(data, n)
        shutil.rmtree(out, ignore_errors=True)
        log(f"shards: EntityCS run_recipe on {n:,} sentences in a child process…")
        code, rss, wall, tail = peak_rss_of([sys.executable, "-c", CHILD, str(config), str(data), str(out)], env=env, cwd=ROOT)
        line = next((l for l in tail.splitlines() if l.startswith("RESULT ")), None)
        if code != 0 or line is None:
            raise RuntimeError(f"EntityCS run on {n} sentences failed (exit {code}): {tail[-500:]}")
        info = json.loads(line[7:])
        manifest = out / "manifest.json"
        # VmHWM of the child's own address space: ru_maxrss would include the pages of this (large) parent that
        # the child had between fork and exec, as Linux keeps ru_maxrss across exec.
        figures[n] = {**info, "peak_rss_mib": info["vmhwm_mib"], "rusage_mib": rss, "proc_wall_s": wall,
                      "manifest_kib": manifest.stat().st_size / 1024}
        # One manifest save at the final size (the pipeline rewrites it after every batch).
        from synth.shards import Manifest

        loaded = Manifest(out)
        with timed() as t_save:
            loaded.save()
        figures[n]["manifest_save_s"] = t_save.wall_s
        shutil.rmtree(out, ignore_errors=True)
        data.unlink()
    small, large = (figures[n] for n in sizes)
    growth = large["peak_rss_mib"] / small["peak_rss_mib"]
    result.goal(f"peak RSS {sizes[1]:,} / {sizes[0]:,} input rows", growth, GOAL_RSS_GROWTH, higher_is_better=False)
    for n in sizes:
        f = figures[n]
        result.add(f"{n:,} sentences: peak RSS MiB / output rows / batches / wall s",
                   f"{f['peak_rss_mib']:,.0f} / {f['rows']:,} / {f['batches']:,} / {f['wall_s']:.1f}")
        result.add(f"{n:,} sentences: sentences/s, manifest KiB, one manifest save at that size s",
                   f"{n / f['wall_s']:,.0f}, {f['manifest_kib']:,.0f}, {f['manifest_save_s']:.3f}")
    last = figures[sizes[1]]
    estimate = last["batches"] * last["manifest_save_s"] / 2  # saves grow linearly: the mean is half the last
    result.add(f"manifest rewrites over the {sizes[1]:,}-sentence run (≈ batches × last save / 2) s, share of its wall",
               f"{estimate:.1f}, {estimate / last['wall_s']:.1%}")
    # The duplicate-id set of RecipeRun.all_batches: its memory per million ids of this input's shape.
    ids = [f"{i % 400}-s{i % 997}-r{i // 400}" for i in range(200_000)]
    tracemalloc.start()
    seen = set(ids)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    ids_bytes = sum(sys.getsizeof(i) for i in ids)
    per_million = (current + ids_bytes) / len(seen) * 1e6 / 2**20
    result.add("RecipeRun `seen` set: MiB per million source ids (set + the id strings it keeps alive)", per_million)
    result.notes.append(
        f"The `seen` set grows linearly: ~{per_million:,.0f} MiB per million input records "
        f"(~{per_million * sizes[1] / 1e6:,.0f} MiB at {sizes[1]:,}), and the manifest grows by one entry per batch "
        "and is rewritten (JSON, fsync) after every batch, so its cost per batch grows with the run."
    )


def run(ctx: Context) -> Result:
    result = Result(NAME, TITLE)
    write_throughput(ctx, result)
    rss_growth(ctx, result)
    return result
