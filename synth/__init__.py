"""polysynth: multilingual training data with LLMs (SWIM-IR SAP, EntityCS, COD).

The library is pure: nothing here imports Prefect except ``flows/``.
"""

__version__ = "0.1.0"
