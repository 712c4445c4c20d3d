"""``python -m synth.sources.wikipedia``: regenerate the shipped samples (see :mod:`.samples`)."""

from synth.sources.wikipedia.samples import main

main()
