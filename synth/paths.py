"""Where the project's data lives: prompts and shipped resources are data, not code."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Prompt templates and exemplars are data: POLYSYNTH_PROMPTS_DIR points a run at an edited copy. What a template
# renders is part of each row's identity, so editing one regenerates exactly the requests it renders.
PROMPTS_DIR = Path(os.environ.get("POLYSYNTH_PROMPTS_DIR") or PROJECT_ROOT / "prompts").resolve()
DATA_DIR = PROJECT_ROOT / "data"


def cache_dir() -> Path:
    """User cache for converted models and similar derived artifacts (``POLYSYNTH_CACHE`` overrides)."""
    root = os.environ.get("POLYSYNTH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "polysynth"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
