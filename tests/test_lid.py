"""Tests of synth.filters.lid, measured on real human-written text: the SWIM-IR exemplars shipped in prompts/sap/exemplars.

Run with ``pytest tests/test_lid.py -s`` to see the accuracy report per tool and mode.
"""

from __future__ import annotations

import csv
import gc
import json
import re
from collections import Counter
from collections.abc import Iterator

import pytest
import yaml

import synth.filters.lid as lid_module
from synth.config import LidConfig
from synth.errors import ConfigError
from synth.filters.lid import (
    LanguageIdentifier,
    LidVerdict,
    check_script,
    is_checkable,
    normalize_lang,
    normalize_text,
    script_of,
    supported_languages,
)
from synth.paths import DATA_DIR, PROMPTS_DIR

EXEMPLARS = PROMPTS_DIR / "sap" / "exemplars"
LANGUAGE_NAMES = {
    "Arabic": "ar", "Assamese": "as", "Bengali": "bn", "Bhojpuri": "bho", "Chinese": "zh", "English": "en",
    "Farsi": "fa", "Finnish": "fi", "French": "fr", "German": "de", "Gujarati": "gu", "Hindi": "hi",
    "Indonesian": "id", "Japanese": "ja", "Kannada": "kn", "Konkani": "kok", "Korean": "ko", "Maithili": "mai",
    "Malayalam": "ml", "Marathi": "mr", "Odia": "or", "Pashto": "ps", "Punjabi": "pa", "Russian": "ru",
    "Sanskrit": "sa", "Spanish": "es", "Swahili": "sw", "Tamil": "ta", "Telugu": "te", "Thai": "th",
    "Urdu": "ur", "Yoruba": "yo",
}  # fmt: skip
# A wrong target for each language: a close relative fastText could mistake it for.
RELATIVE = {
    "ar": "fa", "bn": "as", "de": "nl", "en": "de", "es": "pt", "fa": "ur", "fi": "et", "fr": "it", "hi": "mr",
    "id": "ms", "ja": "zh", "ko": "ja", "ru": "uk", "sw": "so", "te": "kn", "th": "lo", "zh": "ja",
}  # fmt: skip
LONG = 40  # characters: the boundary between the "short" and "long" accuracy figures
MODES = ("fasttext", "cascade", "agree")

Sample = tuple[str, str]  # (text, language code)


def _column_language(header: str) -> tuple[str, bool]:
    """'Hindi (Verified)' -> ('hi', True); 'Arabic (MT)' -> ('ar', False)."""
    name, _, kind = header.partition(" (")
    return normalize_lang(LANGUAGE_NAMES[name]), kind.startswith("Verified")


def _translated_questions() -> Iterator[tuple[str, str, bool]]:
    """(question, code, human-verified) from the XOR-Retrieve and XTREME-UP tables (banner row, then header)."""
    for name in ("XOR-Retrieve-prompts.csv", "xtreme-up-prompts.csv"):
        with open(EXEMPLARS / name, encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))[1:]
        header = rows[0]
        for row in rows[1:]:
            for column, text in zip(header[2:], row[2:], strict=True):
                if len(text.strip()) > 1:  # some cells hold a lone placeholder character
                    yield (text.strip(), *_column_language(column))


def _miracl() -> Iterator[Sample]:
    """MIRACL passages (Wikipedia) and the human-written summaries and questions about them."""
    with open(EXEMPLARS / "MIRACL-prompts.csv", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Language"]:
                code = normalize_lang(LANGUAGE_NAMES[row["Language"]])
                yield from ((row[field].strip(), code) for field in ("Passage", "Summary", "Question") if row[field])


def _windows(text: str) -> list[str]:
    """Short real strings cut from a long text: runs of words of 12-39 characters (10-18 characters of
    CJK text, which has no spaces), as short generated queries or titles look."""
    text = normalize_text(text)
    if len(re.findall(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]", text)) * 3 > len(text):
        cuts, start, out = (10, 14, 18), 0, []
        while start < len(text):
            size = cuts[len(out) % 3]
            out.append(text[start : start + size].strip())
            start += size
        return [piece for piece in out if len(piece) >= 6]
    out, words = [], []
    for word in text.split():
        if len(" ".join([*words, word])) >= LONG:
            out.append(" ".join(words))
            words = []
        words.append(word)
    out.append(" ".join(words))
    return [piece for piece in out if 12 <= len(piece) < LONG]


@pytest.fixture(scope="module")
def human() -> list[Sample]:
    """Deduplicated human-written samples (MIRACL and the verified question translations)."""
    samples = set(_miracl()) | {(text, code) for text, code, verified in _translated_questions() if verified}
    return sorted(samples)


@pytest.fixture(scope="module")
def human_long(human: list[Sample]) -> list[Sample]:
    """Long human text in languages fastText can confirm (Yoruba is the exception, tested separately)."""
    return [(text, code) for text, code in human if len(normalize_text(text)) >= LONG and _is_lid_target(code)]


@pytest.fixture(scope="module")
def human_short(human: list[Sample]) -> list[Sample]:
    """Short human strings: short questions as they are, and windows cut from the long texts."""
    samples = set()
    for text, code in human:
        if not _is_lid_target(code):
            continue
        pieces = [text] if len(normalize_text(text)) < LONG else _windows(text)
        samples.update((normalize_text(piece), code) for piece in pieces)
    return sorted(samples)


@pytest.fixture(scope="module")
def identifiers() -> dict[str, LanguageIdentifier]:
    return {mode: LanguageIdentifier(LidConfig(mode=mode)) for mode in MODES}


def _is_lid_target(code: str) -> bool:
    return code in supported_languages() and code not in lid_module.UNRELIABLE_LID


def _negatives(samples: list[Sample]) -> list[Sample]:
    """Each text paired with wrong targets: English (the usual failure of a small LLM) and a close relative."""
    return [(text, wrong) for text, code in samples for wrong in sorted({"en", RELATIVE[code]} - {code})]


def _rates(lid: LanguageIdentifier, samples: list[Sample]) -> tuple[float, float]:
    """(share of samples kept for their own language, share rejected for a wrong target)."""
    kept = lid.check([text for text, _ in samples], [code for _, code in samples])
    negatives = _negatives(samples)
    rejected = lid.check([text for text, _ in negatives], [code for _, code in negatives])
    return sum(v.keep for v in kept) / len(kept), sum(not v.keep for v in rejected) / len(rejected)


def _identification_accuracy(lid: LanguageIdentifier, samples: list[Sample]) -> tuple[float, float]:
    """Top-1 accuracy of fastText and of langdetect."""
    texts = [text for text, _ in samples]
    fasttext = sum(lang == code for (lang, _), (_, code) in zip(lid.identify(texts), samples, strict=True))
    langdetect = sum(lang == code for lang, (_, code) in zip(lid.detect_langdetect(texts), samples, strict=True))
    return fasttext / len(samples), langdetect / len(samples)


# --- codes -------------------------------------------------------------------------------------------------


def test_supported_languages_are_the_model_labels() -> None:
    labels = LanguageIdentifier()._model.get_labels()
    assert supported_languages() == {label.removeprefix("__label__") for label in labels}
    assert len(supported_languages()) == 176


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("zh-cn", "zh"), ("zh-TW", "zh"), ("zh_Hant", "zh"), ("zho", "zh"), ("chi", "zh"), ("cmn", "zh"),
        ("swa", "sw"), ("swh", "sw"), ("deu", "de"), ("ger", "de"), ("pt-BR", "pt"), (" EN ", "en"),
        ("iw", "he"), ("nb", "no"), ("fil", "tl"), ("fas", "fa"), ("hbs", "sh"), ("kok", "gom"),
        ("bho", "bh"), ("gsw", "als"), ("zh-yue", "yue"), ("arb", "ar"), ("npi", "ne"), ("brx", "brx"),
    ],
)  # fmt: skip
def test_normalize_lang(code: str, expected: str) -> None:
    assert normalize_lang(code) == expected


def test_every_code_normalizes_to_itself() -> None:
    assert all(normalize_lang(code) == code for code in supported_languages())


def test_langdetect_labels_map_into_the_code_set() -> None:
    factory = lid_module._langdetect_factory()
    mapped = {normalize_lang(label) for label in factory.get_lang_list()}
    assert mapped == lid_module._LANGDETECT_CODES
    assert mapped <= supported_languages()


def test_unknown_language_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="'xx'") as raised:
        normalize_lang("xx")
    assert len(str(raised.value)) < 300  # names the code, does not dump the code list
    with pytest.raises(ConfigError, match="'qq'"):
        LanguageIdentifier().check(["Hallo Welt, wie geht es dir heute?"], ["qq"])
    with pytest.raises(ConfigError, match=r"per_language.*'xx'"):
        LanguageIdentifier(LidConfig(per_language={"xx": 0.3}))


def test_is_checkable() -> None:
    assert all(is_checkable(code) for code in ("hi", "de", "zh-cn", "swa", "brx", "mai"))
    assert is_checkable("yo")  # fastText never recognises it, its route (lingua) does
    assert not is_checkable("xx")  # unknown: False, not an error


# --- normalisation -----------------------------------------------------------------------------------------


def test_normalize_text() -> None:
    assert normalize_text("  Wer hat\n\ndie  Glühbirne\r\n\terfunden? ") == "Wer hat die Glühbirne erfunden?"


def test_newlines_do_not_reach_fasttext(identifiers: dict[str, LanguageIdentifier]) -> None:
    lid = identifiers["fasttext"]
    multiline = "Die Glühbirne wurde\nvon Thomas Edison\n\nverbessert und verkauft."
    assert lid.identify([multiline]) == lid.identify([normalize_text(multiline)])
    assert lid.identify([multiline])[0][0] == "de"


def test_empty_texts(identifiers: dict[str, LanguageIdentifier]) -> None:
    lid = identifiers["cascade"]
    blanks = ["", "   \n ", "1990 - 2011 !?", "Das ist ein ganz normaler deutscher Satz."]
    assert lid.identify(blanks)[:3] == [(None, 0.0)] * 3
    verdicts = lid.check(blanks, ["de"] * 4)
    assert [v.reason for v in verdicts] == ["empty", "empty", "empty", None]
    assert verdicts[0] == LidVerdict(None, 0.0, None, False, "empty")


def test_scores_are_probabilities(identifiers: dict[str, LanguageIdentifier], human: list[Sample]) -> None:
    scores = [score for _, score in identifiers["fasttext"].identify([text for text, _ in human])]
    assert all(0.0 < score <= 1.0 for score in scores)


# --- script check ------------------------------------------------------------------------------------------


def test_script_of() -> None:
    assert {code: script_of(code) for code in ("hi", "ar", "zh", "ru", "th", "ja", "ko", "ur")} == {
        "hi": "Devanagari", "ar": "Arabic", "zh": "Han", "ru": "Cyrillic", "th": "Thai", "ja": "Japanese",
        "ko": "Hangul", "ur": "Arabic",
    }  # fmt: skip
    assert script_of("en") is None and script_of("sr") is None and script_of("xx") is None


@pytest.mark.parametrize("code", ["hi", "ar", "zh", "ru", "th"])
def test_script_check(code: str, human: list[Sample]) -> None:
    own = [text for text, lang in human if lang == code]
    others = [text for text, lang in human if lang in {"en", "hi", "ar", "zh", "ru", "th"} - {code}]
    assert own and all(check_script(text, code) for text in own)
    assert not any(check_script(text, code) for text in others)


def test_script_check_counts_letters_only() -> None:
    assert check_script("मॉस्को शहर 2024: 12,5 % (Moscow)", "hi")  # digits and signs do not count
    assert not check_script("मॉस्को (Moscow)", "hi")  # a tie is no majority
    assert not check_script("Moscow मॉस्को Russia capital", "hi")
    assert check_script("東京タワーはどこにありますか", "ja") and check_script("Any text at all", "en")
    assert not check_script("2024 !!", "hi")  # no letters, no evidence


def test_script_mismatch_comes_before_lid(identifiers: dict[str, LanguageIdentifier]) -> None:
    text = "Which award did the British television series Long Lost Family win?"
    assert [v.reason for v in identifiers["cascade"].check([text] * 3, ["hi", "ru", "de"])] == [
        "script_mismatch", "script_mismatch", "lid_mismatch",
    ]  # fmt: skip
    unchecked = LanguageIdentifier(LidConfig(script_check=False)).check([text], ["hi"])
    assert unchecked[0].reason == "lid_mismatch"


# --- accuracy ----------------------------------------------------------------------------------------------


def test_accuracy_on_long_human_text(identifiers: dict[str, LanguageIdentifier], human_long: list[Sample]) -> None:
    languages = Counter(code for _, code in human_long)
    assert len(languages) >= 15
    fasttext, langdetect = _identification_accuracy(identifiers["fasttext"], human_long)
    print(f"\n>= {LONG} chars, {len(human_long)} texts, {len(languages)} languages: top-1 fastText {fasttext:.3f}, "
          f"langdetect {langdetect:.3f}")  # fmt: skip
    assert fasttext >= 0.95
    for mode, lid in identifiers.items():
        kept, rejected = _rates(lid, human_long)
        print(f"  {mode:8s} kept for own language {kept:.3f}, rejected for a wrong one {rejected:.3f}")
        assert kept >= 0.95 and rejected >= 0.99


def test_report_on_short_strings(identifiers: dict[str, LanguageIdentifier], human_short: list[Sample]) -> None:
    """Short strings are where the tools differ; the figures are printed, the floors only catch breakage."""
    fasttext, langdetect = _identification_accuracy(identifiers["fasttext"], human_short)
    print(f"\n< {LONG} chars, {len(human_short)} strings: top-1 fastText {fasttext:.3f}, langdetect {langdetect:.3f}")
    assert fasttext >= 0.85 and langdetect >= 0.85
    rates = {}
    for mode, lid in identifiers.items():
        rates[mode] = _rates(lid, human_short)
        print(f"  {mode:8s} kept for own language {rates[mode][0]:.3f}, rejected for a wrong one {rates[mode][1]:.3f}")
        assert rates[mode][0] >= 0.8 and rates[mode][1] >= 0.97


def test_langdetect_veto_only_drops_rows(human_short: list[Sample]) -> None:
    """Without routes, a langdetect veto can only drop rows: more langdetect, fewer kept and more rejected."""
    samples = human_short[::3]  # a sample keeps agree mode quick
    rates = [_rates(LanguageIdentifier(LidConfig(mode=mode), routes={}), samples) for mode in MODES]
    kept, rejected = [k for k, _ in rates], [r for _, r in rates]
    assert (kept, rejected) == (sorted(kept, reverse=True), sorted(rejected))


def test_report_thresholds(human_long: list[Sample], human_short: list[Sample]) -> None:
    """The figures behind the default threshold (module docstring): datatrove 0.65, ours 0.5, NeMo 0.3."""
    print()
    for threshold in (0.3, 0.5, 0.65):
        lid = LanguageIdentifier(LidConfig(mode="fasttext", threshold=threshold))
        (long_kept, long_rejected), (short_kept, short_rejected) = _rates(lid, human_long), _rates(lid, human_short)
        print(f"threshold {threshold}: >= {LONG} chars kept {long_kept:.3f} rejected {long_rejected:.3f}; "
              f"< {LONG} chars kept {short_kept:.3f} rejected {short_rejected:.3f}")  # fmt: skip
        assert long_rejected >= 0.99


# --- policy ------------------------------------------------------------------------------------------------


def test_langdetect_is_deterministic(human_short: list[Sample]) -> None:
    texts = [text for text, _ in human_short[::7]]
    first = LanguageIdentifier().detect_langdetect(texts)
    assert LanguageIdentifier().detect_langdetect(texts) == first
    assert LanguageIdentifier().detect_langdetect(list(reversed(texts))) == list(reversed(first))
    assert LanguageIdentifier().detect_langdetect(["1234 ?!"]) == [None]
    assert "zh" in LanguageIdentifier().detect_langdetect(["我们今天去北京大学参观。", "我們今天去北京大學參觀。"])


def test_cascade_consults_langdetect_less_than_agree(
    monkeypatch: pytest.MonkeyPatch, human_short: list[Sample], human_long: list[Sample]
) -> None:
    consulted: Counter[str] = Counter()
    original = LanguageIdentifier.detect_langdetect

    def counting(self: LanguageIdentifier, texts: list[str]) -> list[str | None]:
        consulted[self.config.mode] += len(texts)
        return original(self, texts)

    monkeypatch.setattr(LanguageIdentifier, "detect_langdetect", counting)
    samples = human_short[::4] + human_long  # a sample keeps agree mode quick
    for mode in MODES:
        LanguageIdentifier(LidConfig(mode=mode)).check([t for t, _ in samples], [c for _, c in samples])
    print(f"\nlangdetect calls on {len(samples)} texts: {dict(consulted)}")
    assert consulted["fasttext"] == 0
    assert 0 < consulted["cascade"] < consulted["agree"] / 3


def test_langdetect_vetoes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The policy alone: fastText's answers are fixed, langdetect answers the target, another language, nothing."""
    scores = {"Welchen Preis hat die Fernsehserie gewonnen?": 0.7, "Wo liegt Berlin?": 0.7, "Was ist Berlin?": 0.95}
    monkeypatch.setattr(
        LanguageIdentifier, "_predict", lambda self, lines: (["de"] * len(lines), [scores[line] for line in lines])
    )
    texts, targets = list(scores), ["de"] * len(scores)
    for answer, keep in (("nl", False), ("de", True), (None, True)):
        monkeypatch.setattr(LanguageIdentifier, "detect_langdetect", lambda self, texts, a=answer: [a] * len(texts))
        agree = LanguageIdentifier(LidConfig(mode="agree")).check(texts, targets)
        assert [(v.keep, v.agree) for v in agree] == [(keep, None if answer is None else keep)] * 3
        assert {v.reason for v in agree} == {None if keep else "lid_mismatch"}
        cascade = LanguageIdentifier(LidConfig(mode="cascade")).check(texts, targets)
        # only the short text fastText is unsure about is asked: long, or short and sure, are not
        assert [v.keep for v in cascade] == [True, keep, True]
        assert [v.agree for v in cascade] == [None, None if answer is None else keep, None]
        assert all(v.keep for v in LanguageIdentifier(LidConfig(mode="fasttext")).check(texts, targets))


def test_per_language_threshold(identifiers: dict[str, LanguageIdentifier], human_long: list[Sample]) -> None:
    texts = [text for text, code in human_long if code in ("de", "fr")]
    codes = [code for text, code in human_long if code in ("de", "fr")]
    strict = LanguageIdentifier(LidConfig(mode="fasttext", per_language={"deu": 1.0}))
    assert strict.threshold("de") == 1.0 and strict.threshold("fr") == 0.5
    default = identifiers["fasttext"].check(texts, codes)
    for verdict, code, before in zip(strict.check(texts, codes), codes, default, strict=True):
        assert verdict.keep == (before.keep and (code == "fr" or verdict.score >= 1.0))
    assert any(
        before.keep and not after.keep for before, after in zip(default, strict.check(texts, codes), strict=True)
    )


def test_length_mismatch_is_an_error(identifiers: dict[str, LanguageIdentifier]) -> None:
    with pytest.raises(ValueError, match="2 texts but 1"):
        identifiers["fasttext"].check(["a b", "c d"], ["de"])


def test_short_script_unique_text_trusts_the_script(monkeypatch: pytest.MonkeyPatch) -> None:
    """fastText naming another language does not drop a short Thai or Korean string, but does a long one or
    a short string of a script shared with other languages (Devanagari)."""
    monkeypatch.setattr(LanguageIdentifier, "_predict", lambda self, lines: (["en"] * len(lines), [0.9] * len(lines)))
    lid = LanguageIdentifier(LidConfig(mode="fasttext"))  # no route: Hindi's (CLD3) would confirm the Hindi string
    texts = [
        "กรุงเทพฯ อยู่ที่ไหน",
        "서울은 어디에 있나요?",
        "दिल्ली कहाँ है?",
        "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทยมาตั้งแต่สมัยรัชกาลที่หนึ่ง",
    ]
    assert [v.keep for v in lid.check(texts, ["th", "ko", "hi", "th"])] == [True, True, False, False]


def test_targets_fasttext_cannot_confirm(identifiers: dict[str, LanguageIdentifier], human: list[Sample]) -> None:
    """Maithili, Bhojpuri, Konkani and script-only languages (and Yoruba in fastText mode, without its route):
    kept unless fastText refutes them."""
    yoruba = [text for text, code in human if code == "yo"]
    english = "Which award did the British television series Long Lost Family win in 2012?"
    indic = {code: text for text, code, _ in _translated_questions() if code in ("mai", "bh", "gom", "hi")}
    assert all(v.keep for v in identifiers["fasttext"].check(yoruba, ["yo"] * len(yoruba)))
    for lid in identifiers.values():
        assert lid.check([english], ["yo"])[0].reason == "lid_mismatch"
        assert all(v.keep for v in lid.check(list(indic.values()), list(indic)))
        assert all(v.keep for v in lid.check([indic["hi"]] * 3, ["mai", "brx", "hne"]))  # Hindi passes
        assert [v.reason for v in lid.check([english] * 2, ["mai", "brx"])] == ["script_mismatch"] * 2
    unchecked = LanguageIdentifier(LidConfig(script_check=False)).check([english], ["brx"])
    assert unchecked[0].reason == "lid_mismatch"


def test_models_are_shared() -> None:
    assert LanguageIdentifier()._model is LanguageIdentifier(LidConfig(mode="agree"))._model


def test_translated_questions_are_mostly_identified(identifiers: dict[str, LanguageIdentifier]) -> None:
    """Machine-translated questions (XOR-Retrieve, XTREME-UP): a report, with a floor for languages LID confirms."""
    samples = sorted({(text, code) for text, code, _ in _translated_questions() if _is_lid_target(code)})
    kept = identifiers["cascade"].check([t for t, _ in samples], [c for _, c in samples])
    by_language: dict[str, list[bool]] = {}
    for verdict, (_, code) in zip(kept, samples, strict=True):
        by_language.setdefault(code, []).append(verdict.keep)
    print("\ntranslated questions kept (cascade):", {c: f"{sum(k)}/{len(k)}" for c, k in sorted(by_language.items())})
    assert sum(v.keep for v in kept) / len(kept) >= 0.9


# --- held-out evaluation set and the per-language routing (data/lid, synth.filters.lid.ROUTES) ----------------------

LID_DATA = DATA_DIR / "lid"
GOAL = 0.98
# Held-out texts kept / texts where the routing stays under the goal, one text short each (README,
# bench/RESULTS.md). French is not routed (fastText keeps all its dev texts): "Nul ne sera tenu en esclavage ni
# en servitude ;" is es 0.37 to fastText. Spanish "Nadie será sometido a torturas ni a penas o tratos crueles,
# inhumanos o degradantes." is pt to fastText (0.24) and to CLD3. Yoruba "Ọdun melo ni Nelson Mandela lo ninu
# tubu?" (no tone marks) is Tsonga to lingua.
BELOW_GOAL = {"es": (48, 49), "fr": (42, 43), "yo": (48, 49)}
WEAK = ("af", "id", "sw", "yo")  # fastText alone keeps < 90 % of their dev texts


def _targeted_languages() -> list[str]:
    """Every language a shipped config targets (recipe overrides included), in our codes."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "languages" and isinstance(value, list):
                    found.update(normalize_lang(code) for code in value)
                else:
                    walk(value)

    for path in sorted((DATA_DIR / "configs").glob("*.yaml")):
        walk(yaml.safe_load(path.read_text(encoding="utf-8")))
    return sorted(found)


TARGETED = _targeted_languages()


def _split(name: str) -> list[Sample]:
    with (LID_DATA / f"{name}.jsonl").open(encoding="utf-8") as handle:
        return [(record["text"], record["lang"]) for record in map(json.loads, handle)]


@pytest.fixture(scope="module")
def held_out() -> list[Sample]:
    return _split("eval")


@pytest.fixture(scope="module")
def routed() -> LanguageIdentifier:
    return LanguageIdentifier(LidConfig(mode="cascade"))


@pytest.fixture(scope="module")
def alone() -> LanguageIdentifier:
    return LanguageIdentifier(LidConfig(mode="cascade"), routes={})


def _kept(lid: LanguageIdentifier, samples: list[Sample]) -> list[bool]:
    return [v.keep for v in lid.check([text for text, _ in samples], [code for _, code in samples])]


def _script_before(text: str, code: str) -> bool:
    """check_script as it was: three counts by findall."""
    script = lid_module._SCRIPT_OF.get(code)
    if script is None:
        return True
    letters = sum(map(len, lid_module._LETTER_RUN.findall(text)))
    units = letters + len(lid_module._marks().findall(text))
    return letters > 0 and 2 * sum(map(len, lid_module._script_units(script).findall(text))) > units


def _check_before(lid: LanguageIdentifier, texts: list[str], targets: list[str]) -> list[LidVerdict]:
    """check() as it was before the routes and the batched rewrite, row by row: the reference its verdicts
    must still match wherever no route decides (fastText through its wrapper's predict, not check()'s path)."""
    lines = [normalize_text(text) for text in texts]
    rows = [row for row, line in enumerate(lines) if lid_module._LETTER.search(line)]
    predictions: list[tuple[str | None, float]] = [(None, 0.0)] * len(lines)
    labels, probs = lid._model.predict([lines[row] for row in rows], k=1)
    for row, label, prob in zip(rows, labels, probs, strict=True):
        predictions[row] = (label[0].removeprefix("__label__"), min(float(prob[0]), 1.0))
    mode, script_check = lid.config.mode, lid.config.script_check
    verdicts: list[LidVerdict] = []
    ask: list[int] = []
    for row, (line, target, (lang, score)) in enumerate(zip(lines, targets, predictions, strict=True)):
        code, short = normalize_lang(target), len(line) < lid_module.SHORT_CHARS
        threshold = lid.threshold(code)
        if lang is None:
            verdicts.append(LidVerdict(None, 0.0, None, False, "empty"))
        elif script_check and not _script_before(line, code):
            verdicts.append(LidVerdict(lang, score, None, False, "script_mismatch"))
        elif short and script_check and lid_module._script_unique(code):
            verdicts.append(LidVerdict(lang, score, None, True, None))
        elif not lid_module._lid_confirms(code):
            vetoed = lang != code and lang not in lid_module._confused_with(code) and score >= threshold
            verdicts.append(LidVerdict(lang, score, None, not vetoed, "lid_mismatch" if vetoed else None))
        elif lang != code or score < threshold:
            verdicts.append(LidVerdict(lang, score, None, False, "lid_mismatch"))
        else:
            verdicts.append(LidVerdict(lang, score, None, True, None))
            unsure = short and score < lid_module.CASCADE_SURE_SCORE
            if code in lid_module._LANGDETECT_CODES and (mode == "agree" or (mode == "cascade" and unsure)):
                ask.append(row)
    for row, opinion in zip(ask, lid.detect_langdetect([lines[row] for row in ask]), strict=True):
        agree = None if opinion is None else opinion == normalize_lang(targets[row])
        keep = agree is not False
        verdicts[row] = verdicts[row]._replace(agree=agree, keep=keep, reason=None if keep else "lid_mismatch")
    return verdicts


@pytest.fixture(scope="module")
def fixed_set(held_out: list[Sample]) -> tuple[list[str], list[str]]:
    """Texts and targets the verdicts are compared on: every held-out text and the short strings cut from
    them, each for its own language and for a wrong one, and texts without letters or in a foreign script."""
    pieces = sorted({(piece, code) for text, code in held_out for piece in _windows(text)})
    samples = []
    for index, (text, code) in enumerate(held_out + pieces):
        wrong = TARGETED[index % len(TARGETED)]
        samples += [(text, wrong if wrong != code else "en")] + ([(text, code)] if code in TARGETED else [])
    odd = ("", " \n ", "1990 - 2011 !?", "मॉस्को (Moscow)")
    samples += [(text, code) for text in odd for code in ("hi", "de", "yo")]
    return [text for text, _ in samples], [code for _, code in samples]


def test_eval_set_covers_every_targeted_language(held_out: list[Sample]) -> None:
    counts = Counter(code for _, code in held_out)
    assert min(counts[code] for code in TARGETED) >= 15


def test_eval_texts_are_long_and_few_per_language(held_out: list[Sample]) -> None:
    """>= 40 characters each (the issue's measure), <= 200 texts per language."""
    counts = Counter(code for _, code in held_out)
    assert min(len(normalize_text(text)) for text, _ in held_out) >= LONG and max(counts.values()) <= 200


def test_eval_is_held_out_from_dev(held_out: list[Sample]) -> None:
    assert not {text for text, _ in held_out} & {text for text, _ in _split("dev")}


@pytest.mark.parametrize("lang", TARGETED)
def test_held_out_accuracy(lang: str, routed: LanguageIdentifier, held_out: list[Sample]) -> None:
    """The share of a targeted language's held-out texts check() keeps (cascade, routed): >= 98 %, or the
    documented figure."""
    kept = _kept(routed, [(text, code) for text, code in held_out if code == lang])
    if lang in BELOW_GOAL:
        assert (sum(kept), len(kept)) == BELOW_GOAL[lang]
    else:
        assert sum(kept) / len(kept) >= GOAL


def test_routes_are_the_languages_fasttext_alone_misses(alone: LanguageIdentifier) -> None:
    """The routing rule: a targeted language is routed when fastText alone keeps < 98 % of its dev texts."""
    dev = _split("dev")
    kept = {lang: _kept(alone, [(text, code) for text, code in dev if code == lang]) for lang in TARGETED}
    assert {lang for lang, rows in kept.items() if sum(rows) < GOAL * len(rows)} == set(lid_module.ROUTES)


def test_weak_languages_are_kept_by_their_second_identifier(
    routed: LanguageIdentifier, alone: LanguageIdentifier, held_out: list[Sample]
) -> None:
    """Swahili, Yoruba, Afrikaans, Indonesian: the rows fastText alone drops and the routing keeps were
    decided by an identifier of the language's route, and there are such rows for each."""
    deciders = {}
    for lang in WEAK:
        samples = [(text, code) for text, code in held_out if code == lang]
        texts, targets = [text for text, _ in samples], [lang] * len(samples)
        pairs = zip(alone.check(texts, targets), routed.check(texts, targets), strict=True)
        deciders[lang] = {after.second for before, after in pairs if after.keep and not before.keep}
    assert all(found and found <= set(lid_module.ROUTES[lang].identifiers) for lang, found in deciders.items())


def test_routes_accept_no_other_language_but_malay(
    routed: LanguageIdentifier, alone: LanguageIdentifier, held_out: list[Sample]
) -> None:
    """Held-out texts of other languages newly kept for a routed target: only Malay for Indonesian, which no
    identifier here tells apart (fastText alone already keeps most Malay texts for Indonesian)."""
    newly: dict[str, set[str]] = {}
    sample = held_out[::3]  # every language, a third of the lingua calls
    for target in lid_module.ROUTES:
        others = [(text, target) for text, code in sample if code != target]
        codes = [code for _, code in sample if code != target]
        pairs = zip(_kept(alone, others), _kept(routed, others), codes, strict=True)
        if found := {code for before, after, code in pairs if after and not before}:
            newly[target] = found
    assert newly == {"id": {"ms"}}


def test_fasttext_mode_takes_no_route() -> None:
    assert LanguageIdentifier(LidConfig(mode="fasttext")).route("sw") is None


def test_check_matches_the_previous_implementation_in_fasttext_mode(fixed_set: tuple[list[str], list[str]]) -> None:
    """The batched rewrite changed no verdict: fastText mode, every row of the fixed set."""
    lid = LanguageIdentifier(LidConfig(mode="fasttext"))
    texts, targets = fixed_set
    assert lid.check(texts, targets) == _check_before(lid, texts, targets)


def test_unrouted_targets_keep_their_verdicts(fixed_set: tuple[list[str], list[str]]) -> None:
    """Cascade and agree modes: rows whose target has no route get the verdicts they had before routing."""
    texts, targets = fixed_set
    rows = [row for row, target in enumerate(targets) if normalize_lang(target) not in lid_module.ROUTES]
    texts, targets = [texts[row] for row in rows], [targets[row] for row in rows]
    agree_rows = slice(None, None, 25)  # agree mode asks langdetect about every kept row: a sample
    cascade = LanguageIdentifier(LidConfig(mode="cascade"))
    agree = LanguageIdentifier(LidConfig(mode="agree"))
    after = cascade.check(texts, targets) + agree.check(texts[agree_rows], targets[agree_rows])
    before = _check_before(cascade, texts, targets) + _check_before(agree, texts[agree_rows], targets[agree_rows])
    assert after == before


def test_verdicts_fasttext_got_right_do_not_change(
    routed: LanguageIdentifier, fixed_set: tuple[list[str], list[str]]
) -> None:
    """Routed targets too: a row fastText kept for the language it named has the same verdict with the routing
    (for targets fastText can confirm: Yoruba's verdicts all come from its route now)."""
    texts, targets = fixed_set
    before = _check_before(routed, texts, targets)
    codes = [normalize_lang(target) for target in targets]
    right = [
        row
        for row, verdict in enumerate(before)
        if verdict.keep and verdict.lang == codes[row] and lid_module._lid_confirms(codes[row])
    ]
    after = routed.check([texts[row] for row in right], [targets[row] for row in right])
    assert after == [before[row] for row in right]


def test_unknown_second_identifier_is_an_error() -> None:
    with pytest.raises(ValueError, match="'cld2'"):
        LanguageIdentifier().detect_second("cld2", ["Habari za asubuhi"])  # type: ignore[arg-type]


@pytest.mark.parametrize("enabled", [True, False])
def test_check_leaves_the_garbage_collector_as_it_was(enabled: bool) -> None:
    """check() pauses the cyclic collector while it builds verdicts; it is back as it was afterwards."""
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        LanguageIdentifier(LidConfig(mode="fasttext")).check(["Das ist ein ganz normaler deutscher Satz."], ["de"])
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
