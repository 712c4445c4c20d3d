"""3. LID: accuracy on held-out human text, the per-language routing, and throughput per core.

Accuracy. ``data/lid/dev.jsonl`` and ``eval.jsonl`` (human-written text of >= 40 characters in every language
a shipped config targets, plus Malay, Somali, Hausa, Igbo and English as wrong-language texts; see
``data/lid/README.md``). For each targeted language: top-1 accuracy of fastText lid.176, langdetect, CLD3 and
lingua, and the share of its texts ``LanguageIdentifier.check`` keeps with fastText alone and with the routing
of ``synth.filters.lid.ROUTES`` (cascade mode, the default). The routing is re-derived from the dev split and compared
with the shipped table: a language is routed when fastText alone keeps < 98 % of its dev texts; its route is the
candidate (an identifier, or CLD3 then another where CLD3 calls its answer unreliable; accepting the target, or
the target and a neighbour fastText itself cannot tell from it) that keeps the most dev texts, then accepts the
fewest texts of other languages for it, then costs least. The figures reported are the held-out eval split's.

Throughput. Texts are real: every cell of the SWIM-IR exemplar CSVs (passages, summaries, questions in 18+
languages, each with its known language) and the Wikipedia samples (English passages and sentences), split into
short (< 40 characters) and long texts; the clauses (8-39 characters between punctuation) of the long texts add
real short texts in every language, repeated to reach a measurable volume. Each library call has its bare baseline
in the same run: ``fasttext`` ``model.predict`` on the same normalised lines, and langdetect's ``detect`` with
the same settings. Rates are per core: this process is single-threaded (fastText's batch predict and langdetect
run on one thread), and the rate is given per CPU-second of this process (robust to other load on a shared
machine) beside the wall-clock rate. The ratio of fastText-mode ``check()`` to bare predict follows the load rule
of bench/README.md: each ``check()`` run is bracketed by two bare predict runs.

Goals: every targeted language >= 98 % kept on the eval split; ≥ 100k short texts/s/core in fastText mode
(``LanguageIdentifier.check`` with ``mode: fasttext``); agree mode's share of pipeline time ≤ 10 %: its LID time
per generated row (on question-like texts) against the SAP pipeline's wall time per row from benchmark 1 (this
run, else the last recorded figure).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from bench.common import EXEMPLARS, PASSAGES, SENTENCES, WORK, Context, Repeat, Result, log, timed, verdict

NAME = "lid"
TITLE = "3. LID accuracy on held-out human text, routing, throughput"
SHORT = 40
GOAL_SHORT_PER_CORE = 100_000
GOAL_AGREE_SHARE = 0.10
GOAL_ACCURACY = 0.98
ROUNDS = 3  # fastText-mode check() runs, each bracketed by bare predict runs
LID_DATA = Path(__file__).resolve().parent.parent / "data" / "lid"
CONFIGS = Path(__file__).resolve().parent.parent / "data" / "configs"
IDENTIFIERS = ("fasttext", "langdetect", "cld3", "lingua")
# Candidate routes, cheapest first (CLD3 ~10k texts/s, lingua ~1k, langdetect ~0.5-1k on these texts).
CHAINS = (("cld3",), ("lingua",), ("langdetect",), ("cld3", "lingua"), ("cld3", "langdetect"))
# SAP flow wall seconds per generated row measured by benchmark 1 (2 cores, default model), used when
# benchmark 1 did not run in the same invocation and bench/.work has no figure.
RECORDED_SAP_S_PER_ROW = 8.7


def corpus() -> list[tuple[str, str]]:
    """(text, language) pairs from the exemplar CSVs and the Wikipedia samples."""
    from synth.filters.lid import normalize_lang
    from synth.recipes.sap.languages import language_names

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


def targeted_languages() -> list[str]:
    """Every language a shipped config (data/configs/*.yaml, recipe overrides included) targets, our codes."""
    import yaml

    from synth.filters.lid import normalize_lang

    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "languages" and isinstance(value, list):
                    found.update(normalize_lang(code) for code in value)
                else:
                    walk(value)

    for path in sorted(CONFIGS.glob("*.yaml")):
        walk(yaml.safe_load(path.read_text(encoding="utf-8")))
    return sorted(found)


def load_split(name: str) -> list[tuple[str, str]]:
    """(text, language) of ``data/lid/<name>.jsonl``."""
    with (LID_DATA / f"{name}.jsonl").open(encoding="utf-8") as handle:
        return [(record["text"], record["lang"]) for record in map(json.loads, handle)]


class _Answers:
    """Each identifier's answer per text, each text read once: the second identifiers of synth.filters.lid are
    wrapped with a cache for the candidate routes' check() runs."""

    def __init__(self):
        import synth.filters.lid as lid_module

        self._module = lid_module
        self._original = dict(lid_module._SECOND_IDENTIFIERS)
        self.cache: dict[str, dict[str, tuple[str | None, float]]] = {name: {} for name in self._original}

    def __enter__(self) -> "_Answers":
        for name, function in self._original.items():
            self._module._SECOND_IDENTIFIERS[name] = self._cached(name, function)
        return self

    def __exit__(self, *exc) -> None:
        self._module._SECOND_IDENTIFIERS.update(self._original)

    def _cached(self, name, function):
        cache = self.cache[name]

        def answers(lines: list[str]) -> list[tuple[str | None, float]]:
            todo = [line for line in dict.fromkeys(lines) if line not in cache]
            cache.update(zip(todo, function(todo)))
            return [cache[line] for line in lines]

        return answers


def _kept(lid, texts: list[str], target: str) -> list[bool]:
    return [verdict.keep for verdict in lid.check(texts, [target] * len(texts))]


def choose_route(lang: str, dev: list[tuple[str, str]], fasttext_top1: dict[str, str | None]):
    """The measured route for ``lang`` (module docstring): ``(route, kept, false_accepts, table)``, where
    ``table`` lists every candidate as (chain, accepted labels, own dev texts kept, other texts newly kept by
    language)."""
    from synth.config import LidConfig
    from synth.filters.lid import _LANGDETECT_CODES, LanguageIdentifier, Route

    own = [text for text, code in dev if code == lang]
    others = [text for text, code in dev if code != lang]
    other_codes = [code for _, code in dev if code != lang]
    alone = LanguageIdentifier(LidConfig(), routes={})
    kept_alone = _kept(alone, others, lang)
    # A neighbour fastText cannot tell from the target: its most frequent wrong label for the target's texts,
    # when it also names the target for most of that neighbour's texts (Malay for Indonesian).
    wrong = Counter(fasttext_top1[text] for text in own if fasttext_top1[text] not in (lang, None))
    accepts = [frozenset({lang})]
    if wrong:
        neighbour = wrong.most_common(1)[0][0]
        theirs = [text for text, code in dev if code == neighbour]
        if theirs and sum(fasttext_top1[text] == lang for text in theirs) * 2 >= len(theirs):
            accepts.append(frozenset({lang, neighbour}))
    table = []
    for cost, chain in enumerate(CHAINS):
        if "langdetect" in chain and lang not in _LANGDETECT_CODES:
            continue
        for accept in accepts:
            route = Route(chain, accept)  # type: ignore[arg-type]
            lid = LanguageIdentifier(LidConfig(), routes={lang: route})
            kept = sum(_kept(lid, own, lang))
            newly = [code for now, before, code in zip(_kept(lid, others, lang), kept_alone, other_codes) if now and not before]
            table.append((route, kept, len(newly), cost + len(accept), dict(Counter(newly))))
    route, kept, false, _, _ = max(table, key=lambda row: (row[1], -row[2], -row[3]))
    return route, kept / len(own), false, [(r.identifiers, sorted(r.accept), k, by) for r, k, _, _, by in table]


def accuracy(result: Result) -> None:
    """Per-language accuracy of each identifier and of check() with and without the routing (module docstring)."""
    from synth.config import LidConfig
    from synth.filters.lid import ROUTES, LanguageIdentifier, normalize_text

    targeted = targeted_languages()
    dev, held_out = load_split("dev"), load_split("eval")
    languages = sorted({code for _, code in held_out})
    result.add("held-out texts (eval split) / dev texts / languages", f"{len(held_out)} / {len(dev)} / {len(languages)}")
    result.add("languages the shipped configs target", " ".join(targeted))
    alone = LanguageIdentifier(LidConfig(), routes={})
    routed = LanguageIdentifier(LidConfig())
    with _Answers() as answers:
        log(f"lid: routing from the dev split ({len(dev)} texts)…")
        top1_dev = dict(zip([t for t, _ in dev], [lang for lang, _ in alone.identify([t for t, _ in dev])]))
        chosen = {}
        for lang in targeted:
            own = [text for text, code in dev if code == lang]
            rate = sum(_kept(alone, own, lang)) / len(own)
            if rate < GOAL_ACCURACY:
                chosen[lang] = (rate, *choose_route(lang, dev, top1_dev))
        for lang, (rate, route, kept, false, table) in chosen.items():
            shipped = ROUTES.get(lang)
            same = shipped == route
            result.add(
                f"dev: route for {lang} (fastText alone keeps {rate:.3f})",
                f"{' then '.join(route.identifiers)} accepting {'/'.join(sorted(route.accept))}: keeps {kept:.3f}, "
                f"{false} other-language texts newly kept; {'= synth.filters.lid.ROUTES' if same else 'DIFFERS from synth.filters.lid.ROUTES'}",
            )
            log(f"lid: {lang} candidates (chain, accepted, own kept, others newly kept by language): {table}")
        unrouted = sorted(set(ROUTES) - set(chosen))
        if unrouted:
            result.notes.append(f"synth.filters.lid.ROUTES routes {', '.join(unrouted)}, which the dev split does not call for")

        log(f"lid: accuracy on the held-out split ({len(held_out)} texts)…")
        texts = [normalize_text(text) for text, _ in held_out]
        top1 = {
            "fasttext": [lang for lang, _ in alone.identify(texts)],
            "langdetect": alone.detect_langdetect(texts),
            "cld3": [lang for lang, _ in alone.detect_second("cld3", texts)],
            "lingua": [lang for lang, _ in alone.detect_second("lingua", texts)],
        }
        worst = 1.0
        for lang in targeted:
            rows = [row for row, (_, code) in enumerate(held_out) if code == lang]
            if not rows:
                result.add(f"eval: {lang}", "no held-out texts")
                worst = 0.0
                continue
            own = [texts[row] for row in rows]
            others = [text for text, (_, code) in zip(texts, held_out) if code != lang]
            accuracy_of = {name: sum(top1[name][row] == lang for row in rows) / len(rows) for name in IDENTIFIERS}
            before, after = sum(_kept(alone, own, lang)) / len(rows), sum(_kept(routed, own, lang)) / len(rows)
            worst = min(worst, after)
            route = ROUTES.get(lang)
            figures = " · ".join(f"{name} {value:.3f}" for name, value in accuracy_of.items())
            kept = f"check() keeps: fastText alone {before:.3f} → routed {after:.3f}"
            if route:
                wrong_before = sum(_kept(alone, others, lang))
                wrong_after = sum(_kept(routed, others, lang))
                kept += f" ({' then '.join(route.identifiers)}; other-language texts kept {wrong_before} → {wrong_after} of {len(others)})"
            result.add(f"eval: {lang} ({len(rows)} texts) top-1", f"{figures}; {kept}")
        result.goal("lowest share of a targeted language's held-out texts kept (routed)", worst, GOAL_ACCURACY)


def run(ctx: Context) -> Result:
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    from synth.config import LidConfig
    from synth.filters.lid import LANGDETECT_MAX_CHARS, LANGDETECT_TRIALS, LanguageIdentifier, _fasttext_model, normalize_text

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
    lids["fasttext"].check([t for t, _ in one_per_lang], [l for _, l in one_per_lang])
    lids["fasttext"].detect_langdetect(["warm-up"])
    with timed() as load:  # the routes' identifiers load on first use (lingua: the models of the Latin script)
        for lid in lids.values():
            lid.check([t for t, _ in one_per_lang], [l for _, l in one_per_lang])
    result.add("one-time: CLD3 + lingua load, first routed rows (s)", load.wall_s)
    accuracy(result)

    sizes = {"short": (short, ctx.n(200_000)), "long": (long, ctx.n(40_000))}
    ld_sizes = {"short": ctx.n(1_000), "long": ctx.n(300)}
    goal_rate = None
    for kind, (items, n) in sizes.items():
        texts = [t for t, _ in _repeat(items, n)]
        targets = [l for _, l in _repeat(items, n)]
        lines = [normalize_text(t) for t in texts]
        log(f"lid: {kind}: {n:,} texts through fastText, check() modes; langdetect on {ld_sizes[kind]:,}…")
        # The load rule (bench.common.verdict): each fastText-mode check() run is bracketed by two bare predict
        # runs; the repeat's ratio is check()'s CPU rate over the brackets' mean, and a repeat whose brackets
        # differ by more than 15 % is inconclusive. The rates reported are the best of each.
        bares, checks, repeats = [], [], []
        bares.append(_rate(lambda: model.predict(lines, k=1), n))
        for _ in range(ROUNDS):
            checks.append(_rate(lambda: lids["fasttext"].check(texts, targets), n))
            bares.append(_rate(lambda: model.predict(lines, k=1), n))
            before_s, after_s = bares[-2][2] * n, bares[-1][2] * n
            repeats.append(Repeat(ratio=(before_s + after_s) / 2 / (checks[-1][2] * n), before_s=before_s, after_s=after_s))
        bare = max(bares, key=lambda rate: rate[1])
        check_ft = max(checks, key=lambda rate: rate[1])
        check_ratio = verdict(repeats)
        ident = _rate(lambda: lids["fasttext"].identify(texts), n)
        check_cascade = _rate(lambda: lids["cascade"].check(texts, targets), n)
        m = ld_sizes[kind]
        ld_bare = _rate(lambda: bare_langdetect(lines[:m]), m)
        ld_lib = _rate(lambda: lids["fasttext"].detect_langdetect(texts[:m]), m)
        check_agree = _rate(lambda: lids["agree"].check(texts[:m], targets[:m]), m)
        cascade_verdicts = lids["cascade"].check(texts[: len(items)], targets[: len(items)])
        cascade_share = sum(1 for v in cascade_verdicts if v.agree is not None) / len(items)
        routed_share = sum(1 for v in cascade_verdicts if v.second is not None) / len(items)
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
        result.add(f"{kind}: fastText mode check() / bare predict (CPU rate, bracketed repeats)", check_ratio.describe())
        result.add(f"{kind}: cascade mode check() (routes, langdetect) / bare predict (CPU rate)", check_cascade[1] / bare[1])
        result.add(f"{kind}: detect_langdetect() / bare langdetect (CPU rate)", ld_lib[1] / ld_bare[1])
        result.add(f"{kind}: share of texts sent to langdetect: cascade / agree", f"{cascade_share:.3f} / {agree_share:.3f}")
        result.add(f"{kind}: share of texts a route decided (cascade)", routed_share)
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
