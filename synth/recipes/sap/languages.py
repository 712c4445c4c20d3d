"""The language names SAP prompts use, as the SWIM-IR exemplar files spell them (``prompts/sap/languages.yaml``)."""

from __future__ import annotations

from functools import lru_cache

import yaml

from synth.paths import PROMPTS_DIR


@lru_cache(maxsize=1)
def language_names() -> dict[str, str]:
    """ISO code -> language name as the exemplar files spell it."""
    names = yaml.safe_load((PROMPTS_DIR / "sap" / "languages.yaml").read_text(encoding="utf-8"))
    return {code: name for name, code in names.items()}
