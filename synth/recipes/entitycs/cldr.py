"""Build the offline lexicon from Unicode CLDR through babel: the default shipped as ``data/lexicon/cldr.parquet``.

CLDR comes with babel, so this lexicon builds offline and without a multi-gigabyte dump, from the names of
countries, languages, currencies and cities that CLDR maintains for each locale. CLDR's English names are
not always the English Wikipedia titles EntityCS resolves links by, so each entity also gets the titles it
is linked by (:data:`WIKIPEDIA_TITLES` and spelling variants of its English name) as aliases.

Command line: ``synth lexicon cldr --out my-lexicon.parquet [--languages de,fr,hi]``; the output path is
always given, so the shipped file is replaced only when it is named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from synth.errors import ConfigError
from synth.recipes.entitycs.lexicon import unique_aliases, write_lexicon

# The ~70 languages of the shipped lexicon: the widely spoken languages of the EntityCS/XTREME sets that
# CLDR covers, across Latin, Cyrillic, Arabic, Brahmic, CJK and other scripts.
CLDR_LANGUAGES = (
    "af", "am", "ar", "az", "be", "bg", "bn", "bs", "ca", "cs", "cy", "da", "de", "el", "es", "et", "eu", "fa", "fi",
    "fil", "fr", "ga", "gl", "gu", "ha", "he", "hi", "hr", "hu", "hy", "id", "ig", "is", "it", "ja", "jv", "ka", "kk",
    "km", "kn", "ko", "ky", "lo", "lt", "lv", "mk", "ml", "mn", "mr", "ms", "my", "nb", "ne", "nl", "pa", "pl", "pt",
    "ro", "ru", "si", "sk", "sl", "so", "sq", "sr", "sv", "sw", "ta", "te", "th", "tr", "uk", "ur", "uz", "vi", "yo",
    "zh", "zu",
)
# CLDR pseudo-regions that are not places.
_NOT_TERRITORIES = {"ZZ", "XA", "XB", "QO", "EZ"}
_NOT_LANGUAGES = {"und", "zxx", "mul", "mis"}

# English Wikipedia titles of CLDR entities whose CLDR English name differs from the article title.
WIKIPEDIA_TITLES: dict[str, tuple[str, ...]] = {
    "cldr:territory:US": ("United States of America",),
    "cldr:territory:TR": ("Turkey",),
    "cldr:territory:CZ": ("Czech Republic",),
    "cldr:territory:CD": ("Democratic Republic of the Congo",),
    "cldr:territory:CG": ("Republic of the Congo",),
    "cldr:territory:CI": ("Ivory Coast",),
    "cldr:territory:PS": ("State of Palestine", "Palestine"),
    "cldr:territory:VA": ("Vatican City",),
    "cldr:territory:TL": ("East Timor",),
    "cldr:territory:CV": ("Cape Verde",),
    "cldr:territory:MO": ("Macau",),
    "cldr:territory:FM": ("Federated States of Micronesia",),
    "cldr:territory:BS": ("The Bahamas",),
    "cldr:territory:GM": ("The Gambia",),
    "cldr:territory:IE": ("Republic of Ireland",),
    "cldr:territory:CN": ("People's Republic of China",),
    "cldr:territory:MK": ("Republic of Macedonia", "Macedonia"),
    "cldr:territory:SZ": ("Swaziland",),
    "cldr:territory:GE": ("Georgia (country)",),
    "cldr:territory:MM": ("Burma",),
    "cldr:currency:USD": ("United States dollar",),
    "cldr:currency:GBP": ("Pound sterling",),
    "cldr:city:America/New_York": ("New York City",),
    "cldr:city:Asia/Calcutta": ("Calcutta",),
    "cldr:city:Europe/Kiev": ("Kiev",),
    "cldr:city:Asia/Saigon": ("Saigon",),
}


_PARENTHETICAL = re.compile(r"\s*[(（][^()（）]*[)）]$")


def _title_variants(name: str) -> list[str]:
    """Wikipedia-style spellings of a CLDR English name ("Bosnia & Herzegovina" → "Bosnia and Herzegovina")."""
    variants = [
        _PARENTHETICAL.sub("", name),  # "Myanmar (Burma)" → "Myanmar"
        name.replace(" & ", " and "),
        re.sub(r"^St\. ", "Saint ", name),
        re.sub(r" SAR China$", "", name),  # "Hong Kong SAR China" → "Hong Kong"
        name.replace("’", "'"),
    ]
    return [v for v in variants if v and v != name]


def _is_latin(lang: str) -> bool:
    from babel.core import get_global

    likely = get_global("likely_subtags").get(lang, "")
    return "_Latn" in likely


def build_cldr_lexicon(out_path: str | Path, languages: Iterable[str] = CLDR_LANGUAGES) -> dict[str, int]:
    """Write the offline lexicon from Unicode CLDR via babel; returns counts per kind and of labels.

    Entities (keyed to their CLDR English names): territories (``cldr:territory:JP``), languages with a
    two-letter code (``cldr:language:ja``), currencies in legal tender today (``cldr:currency:JPY``) and the
    time zone exemplar cities (``cldr:city:Asia/Tokyo``). Labels lose a parenthetical that the English
    name also has. A city a locale does not list inherits CLDR's root name (the zone id's last part),
    which is right for Latin-script languages only, so it is taken for those alone.
    """
    from babel import Locale, UnknownLocaleError
    from babel.numbers import get_territory_currencies

    languages = list(dict.fromkeys(languages))
    locales = {}
    for lang in languages:
        try:
            locales[lang] = Locale.parse(lang)
        except (ValueError, LookupError, UnknownLocaleError):
            raise ConfigError(f"babel has no CLDR locale '{lang}'", field="languages") from None
    en = Locale("en")

    currencies: set[str] = set()
    for code in en.territories:
        try:
            currencies.update(get_territory_currencies(code, tender=True))
        except (ValueError, LookupError):
            continue  # regions such as "150" (Europe) have no currency
    zones = sorted(
        {
            zone
            for locale in locales.values()
            for zone, data in locale.time_zones.items()
            if not zone.startswith("Etc/") and dict(data).get("city")
        }
    )

    def english_city(zone: str) -> str:
        return dict(en.time_zones.get(zone, {})).get("city") or zone.rsplit("/", 1)[-1].replace("_", " ")

    kinds: list[tuple[str, list[tuple[str, str]]]] = [
        ("territory", [(c, n) for c, n in en.territories.items() if c not in _NOT_TERRITORIES]),
        (
            "language",
            [(c, n) for c, n in en.languages.items() if re.fullmatch(r"[a-z]{2}", c) and c not in _NOT_LANGUAGES],
        ),
        ("currency", [(c, en.currencies[c]) for c in sorted(currencies) if c in en.currencies]),
        ("city", [(zone, english_city(zone)) for zone in zones]),
    ]
    latin = {lang for lang in languages if _is_latin(lang)}
    rows: list[dict[str, Any]] = []
    counts = {kind: 0 for kind, _ in kinds} | {"labels": 0}
    for kind, entries in kinds:
        for code, english in entries:
            entity_id = f"cldr:{kind}:{code}"
            aliases = list(WIKIPEDIA_TITLES.get(entity_id, ())) + _title_variants(english)
            if kind == "language":
                aliases.append(f"{english} language")  # Wikipedia's article title for most languages
            labels = []
            for lang, locale in locales.items():
                if kind == "city":
                    label = dict(locale.time_zones.get(code, {})).get("city")
                    if label is None and lang in latin:
                        label = english
                else:
                    label = getattr(
                        locale, {"territory": "territories", "language": "languages", "currency": "currencies"}[kind]
                    ).get(code)
                # CLDR adds an alternative name in parentheses to some ("Myanmar (Burma)", "ミャンマー (ビルマ)");
                # a sentence uses the bare name. Other parentheticals disambiguate ("刚果（金）") and stay.
                if label and english != _PARENTHETICAL.sub("", english):
                    label = _PARENTHETICAL.sub("", label)
                if label and label != code:
                    labels.append({"lang": lang, "label": label, "label_source": "cldr"})
            if labels:
                rows.append(
                    {
                        "entity_id": entity_id,
                        "en_title": english,
                        "aliases": unique_aliases(aliases, english),
                        "labels": labels,
                    }
                )
                counts[kind] += 1
                counts["labels"] += len(labels)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_lexicon(rows, out)
    return counts
