"""3. LID throughput: texts/s per core for fastText alone, langdetect alone, and the cascade and agree modes.

Texts are real: every cell of the SWIM-IR exemplar CSVs (passages, summaries, questions in 18+ languages, each
with its known language) and the Wikipedia samples (English passages and sentences), split into short
(< 40 characters) and long texts; the clauses (8-39 characters between punctuation) of the long texts add
real short texts in every language, repeated to reach a measurable volume. Each library call has its bare baseline
in the same run: ``fasttext`` ``model.predict`` on the same normalised lines, and langdetect's ``detect`` with
the same settings. Rates are per core: this process is single-threaded (fastText's batch predict and langdetect
run on one thread), and the rate is given per CPU-second of this process (robust to other load on a shared
machine) beside the wall-clock rate.

Goals: ≥ 100k short texts/s/core in fastText mode (``LanguageIdentifier.check`` with ``mode: fasttext``, the
pipeline's call), and agree mode's share of pipeline time ≤ 10 %: its LID time per generated row (on
question-like texts) against the SAP pipeline's wall time per row from benchmark 1 (this run, else the last
recorded figure).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from bench.common import EXEMPLARS, PASSAGES, SENTENCES, WORK, Context, Result, log, timed

NAME = "lid"
TITLE = "3. LID throughput"
SHORT = 40
GOAL_SHORT_PER_CORE = 100_000
GOAL_AGREE_SHARE = 0.10
# SAP flow wall seconds per generated row measured by benchmark 1 (2 cores, default model), used when
# benchmark 1 did not run in the same invocation and bench/.work has no figure.
RECORDED_SAP_S_PER_ROW = 8.7


def corpus() -> list[tuple[str, str]]:
    """(text, language) pairs from the exemplar CSVs and the Wikipedia samples."""
    from synth.lid import normalize_lang
    from synth.recipes.sap import language_names

    codes = {name: code for code, name in language_names().items()}
    pairs: list[tuple[str, str]] = []
    for name in ("XOR-Retrieve-prompts.csv", "xtreme-up-prompts.csv"):
        with (EXEMPLARS / name).open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
        at = next(i for i, row in enumerate(rows) if row and row[0].strip() == "Article")
        header = rows[at]
        for row in rows[at + 1 :]:
            if not row or not row[0].strip():
                continue
            pairs += [(row[0], "en"), (row[1], "en")]
            for column, cell in zip(header[2:], row[2:]):
                code = codes.get(column.split(" (")[0].strip())
                if code and any(ch.isalpha() for ch in cell):
                    pairs.append((cell, code))
    with (EXEMPLARS / "MIRACL-prompts.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            code = codes.get((row.get("Language") or "").strip())
            if code:
                pairs += [(row[key], code) for key in ("Passage", "Summary", "Question") if any(ch.isalpha() for ch in row[key] or "")]
    for path, field in ((PASSAGES, "text"), (SENTENCES, "text")):
        with path.open(encoding="utf-8") as handle:
            pairs += [(json.loads(line)[field], "en") for line in handle if line.strip()]
    out = []
    for text, lang in pairs:
        try:
            out.append((text.strip(), normalize_lang(lang)))
        except Exception:  # noqa: BLE001 - a language outside the code set: not a LID benchmark text
            continue
    out = [(t, l) for t, l in out if t]
    # More real short texts: clauses of the long ones (split at punctuation), in the same language.
    import re

    clauses = []
    for text, lang in out:
        if len(text) >= SHORT:
            for part in re.split(r"[.,;:!?()\"«»。、，；：！？]+", text):
                part = " ".join(part.split())
                if 8 <= len(part) < SHORT and any(ch.isalpha() for ch in part):
                    clauses.append((part, lang))
    return out + sorted(set(clauses))


def _repeat(items: list, n: int) -> list:
    return (items * (n // max(len(items), 1) + 1))[:n]


def _rate(fn, n: int) -> tuple[float, float, float]:
    """(texts per wall second, texts per CPU second, CPU seconds per text) of ``fn()`` over ``n`` texts."""
    with timed() as t:
        fn()
    return n / t.wall_s, n / max(t.cpu_s, 1e-9), t.cpu_s / n


def sap_seconds_per_row(ctx: Context) -> tuple[float, str]:
    shared = ctx.shared.get("sap")
    if shared:
        return shared["pipeline_s_per_row"], "benchmark 1 in this run"
    path = WORK / "sap_figures.json"
    if path.exists():
        return json.loads(path.read_text())["pipeline_s_per_row"], f"benchmark 1's last figure ({path.name})"
    return RECORDED_SAP_S_PER_ROW, "recorded figure (bench/lid.py RECORDED_SAP_S_PER_ROW)"


def run(ctx: Context) -> Result:
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    from synth.config import LidConfig
    from synth.lid import LANGDETECT_MAX_CHARS, LANGDETECT_TRIALS, LanguageIdentifier, _fasttext_model, normalize_text

    result = Result(NAME, TITLE)
    pairs = corpus()
    short = [(t, l) for t, l in pairs if len(normalize_text(t)) < SHORT]
    long = [(t, l) for t, l in pairs if len(normalize_text(t)) >= SHORT]
    result.add("unique texts: short (< 40 chars) / long", f"{len(short)} / {len(long)} ({len({l for _, l in pairs})} languages)")
    model = _fasttext_model()
    lids = {mode: LanguageIdentifier(LidConfig(mode=mode)) for mode in ("fasttext", "cascade", "agree")}
    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(0)

    def bare_langdetect(lines: list[str]) -> None:
        for line in lines:
            detector = factory.create()
            detector.set_max_text_length(LANGDETECT_MAX_CHARS)
            detector.n_trial = LANGDETECT_TRIALS
            detector.append(line)
            try:
                detector.detect()
            except Exception:  # noqa: BLE001 - no features: same as the library's None
                pass

    # Warm-up outside the timings: langdetect profiles, and the script regexes compiled on first use
    # (the combining-marks class spans the whole BMP and takes a while to compile once per process).
    one_per_lang = list({l: (t, l) for t, l in pairs}.values())
    for lid in lids.values():
        lid.check([t for t, _ in one_per_lang], [l for _, l in one_per_lang])
    lids["fasttext"].detect_langdetect(["warm-up"])

    sizes = {"short": (short, ctx.n(200_000)), "long": (long, ctx.n(40_000))}
    ld_sizes = {"short": ctx.n(1_000), "long": ctx.n(300)}
    goal_rate = None
    for kind, (items, n) in sizes.items():
        texts = [t for t, _ in _repeat(items, n)]
        targets = [l for _, l in _repeat(items, n)]
        lines = [normalize_text(t) for t in texts]
        log(f"lid: {kind}: {n:,} texts through fastText, check() modes; langdetect on {ld_sizes[kind]:,}…")
        bare = _rate(lambda: model.predict(lines, k=1), n)
        ident = _rate(lambda: lids["fasttext"].identify(texts), n)
        check_ft = _rate(lambda: lids["fasttext"].check(texts, targets), n)
        check_cascade = _rate(lambda: lids["cascade"].check(texts, targets), n)
        m = ld_sizes[kind]
        ld_bare = _rate(lambda: bare_langdetect(lines[:m]), m)
        ld_lib = _rate(lambda: lids["fasttext"].detect_langdetect(texts[:m]), m)
        check_agree = _rate(lambda: lids["agree"].check(texts[:m], targets[:m]), m)
        cascade_share = sum(1 for v in lids["cascade"].check(texts[: len(items)], targets[: len(items)]) if v.agree is not None) / len(items)
        agree_share = sum(1 for v in lids["agree"].check(texts[: len(items)], targets[: len(items)]) if v.agree is not None) / len(items)
        for label, (wall, cpu, _) in (
            ("fastText bare model.predict", bare),
            ("fastText alone: identify()", ident),
            ("fastText mode: check()", check_ft),
            ("cascade mode: check()", check_cascade),
            ("langdetect bare detect()", ld_bare),
            ("langdetect alone: detect_langdetect()", ld_lib),
            ("agree mode: check()", check_agree),
        ):
            result.add(f"{kind}: {label}, texts/s per core (CPU) | wall", f"{cpu:,.0f} | {wall:,.0f}")
        result.add(f"{kind}: identify() / bare predict (CPU rate)", ident[1] / bare[1])
        result.add(f"{kind}: detect_langdetect() / bare langdetect (CPU rate)", ld_lib[1] / ld_bare[1])
        result.add(f"{kind}: share of texts sent to langdetect: cascade / agree", f"{cascade_share:.3f} / {agree_share:.3f}")
        if kind == "short":
            goal_rate = check_ft[1]
    result.goal("fastText mode, short texts/s per core", goal_rate, GOAL_SHORT_PER_CORE)

    # Agree mode against generation: LID per row on question-like texts (the exemplar questions, short and long).
    questions = [(t, l) for t, l in pairs if len(t) < 300 and l != "en"] or pairs
    m = ctx.n(1_000)
    batch = _repeat(questions, m)
    agree = _rate(lambda: lids["agree"].check([t for t, _ in batch], [l for _, l in batch]), m)
    cascade = _rate(lambda: lids["cascade"].check([t for t, _ in batch], [l for _, l in batch]), m)
    per_row, source = sap_seconds_per_row(ctx)
    share = agree[2] / per_row
    result.goal("agree mode LID time / SAP pipeline time per row", share, GOAL_AGREE_SHARE, higher_is_better=False)
    result.add("agree mode on question-like texts: ms per row (CPU)", agree[2] * 1000)
    result.add("cascade mode on question-like texts: ms per row (CPU)", cascade[2] * 1000)
    result.add("SAP pipeline wall s per generated row", f"{per_row:.3f} ({source})")
    result.add("cascade mode LID time / SAP pipeline time per row", cascade[2] / per_row)
    return result
