"""The run config: one YAML file per run, validated by pydantic.

Every recipe shares the sections ``input``, ``languages``, ``engine``, ``sampling``, ``lid``,
``dedup``, ``output`` and ``runner`` (:class:`RunConfigBase`); each recipe's ``config_model`` subclasses it with
``recipe: Literal[<name>]`` and a section named after the recipe (``synth/recipes/<name>/config.py``).
Unknown keys are refused so a typo never silently falls back to a default.

Example::

    from synth.config_file import load_config
    config = load_config("data/configs/sap.yaml", overrides={"languages": ["de", "hi"]})
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from synth.errors import ConfigError

LANG_CODE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HFDatasetSpec(Section):
    """A Hugging Face dataset read in streaming mode."""

    name: str = Field(description="Dataset repo id or local dataset directory.")
    config: str | None = Field(None, description="Dataset config name.")
    split: str = Field("train", description="Split to read.")


class InputConfig(Section):
    path: str | None = Field(None, description="Input file (.jsonl, .parquet, .xml.bz2 dump, SGD .json).")
    hf: HFDatasetSpec | None = Field(None, description="Read a Hugging Face dataset instead of a file.")
    limit: int | None = Field(None, ge=1, description="Process at most this many input records.")

    @model_validator(mode="after")
    def _one_source(self) -> "InputConfig":
        if (self.path is None) == (self.hf is None):
            raise ValueError("give exactly one of 'path' or 'hf'")
        return self


class EngineConfig(Section):
    backend: Literal["vllm", "openai"] = Field("vllm", description="In-process vLLM or OpenAI-compatible servers.")
    model: str | None = Field(None, description="Model path or name; empty means the shipped default (Gemma 3 270M).")
    dtype: str = Field("auto", description="vLLM dtype ('auto', 'bfloat16', 'float32').")
    max_model_len: int = Field(4096, ge=256)
    enable_prefix_caching: bool = Field(True, description="Reuse KV cache of shared few-shot prefixes.")
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="KV-cache share; on CPU it is a share of RAM (default 0.15 there, 0.9 on GPU)."
    )
    enforce_eager: bool | None = Field(None, description="Skip graph compilation (default true on CPU).")
    tensor_parallel_size: int = Field(1, ge=1)
    data_parallel_size: int = Field(1, ge=1)
    max_num_seqs: int | None = Field(None, ge=1)
    base_urls: list[str] = Field(default_factory=list, description="OpenAI-compatible endpoints (backend 'openai').")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key, if any.")
    max_concurrency: int = Field(16, ge=1, description="In-flight requests per endpoint (backend 'openai').")
    timeout_s: float = Field(120.0, gt=0, description="Timeout of one HTTP request.")
    max_retries: int = Field(5, ge=0)
    prompt_format: Literal["auto", "completion", "chat"] = Field(
        "auto",
        description="How recipes prompt the model: 'completion' (one few-shot text), 'chat' (system instruction and "
        "exemplars as user/assistant turns through the model's chat template) or 'auto' (chat for instruction-tuned "
        "models, see synth.llm.prompt_format).",
    )

    @model_validator(mode="after")
    def _urls_for_openai(self) -> "EngineConfig":
        if self.backend == "openai" and not self.base_urls:
            raise ValueError("backend 'openai' needs at least one entry in 'base_urls'")
        return self


class SamplingConfig(Section):
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(64, ge=1)
    repetition_penalty: float = Field(1.1, gt=0)
    seed: int = Field(0, description="Base seed; each request derives its own from it and its id.")
    candidates: int = Field(
        1, ge=1, le=64,
        description="Answers a checked request may get (SAP queries, COD turns): the configured sample first; when it "
        "fails the recipe's checks, candidates - 1 more in one call (n) at candidate_temperature; the first that "
        "passes is kept.",
    )
    candidate_temperature: float = Field(
        0.7, gt=0, description="Temperature of candidates after the first (at least 'temperature')."
    )


class LidConfig(Section):
    mode: Literal["fasttext", "cascade", "agree"] = Field(
        "cascade",
        description="fasttext: fastText only; cascade: fastText, a second identifier (CLD3 or lingua) for the "
        "languages it is weak on (synth.filters.lid.ROUTES), and langdetect's veto when fastText is unsure of a short text; "
        "agree: the same routes, and langdetect must agree on every kept row.",
    )
    threshold: float = Field(0.5, ge=0, le=1, description="Minimum fastText score of the target language.")
    per_language: dict[str, float] = Field(default_factory=dict, description="Threshold overrides per language.")
    script_check: bool = Field(True, description="Require the target language's script (e.g. Devanagari for hi).")


class DedupConfig(Section):
    """Near-duplicate removal of generated texts at publish time (``synth.filters.dedup``)."""

    enabled: bool = Field(True, description="Reject near-duplicate generated texts within a language as 'duplicate'.")
    threshold: float = Field(
        0.8, gt=0, lt=1,
        description="Estimated Jaccard similarity of character 3-gram sets from which a row is a near-duplicate.",
    )
    num_perm: int = Field(64, ge=16, le=1024, description="MinHash permutations (4 bytes each per row in memory).")


class OutputConfig(Section):
    dir: str = Field("out", description="Output directory (a Hugging Face dataset repository layout).")
    shard_rows: int = Field(50_000, ge=1, description="Roll a shard over after this many rows.")
    shard_bytes: int = Field(256 * 2**20, ge=1024, description="Roll a shard over after about this many bytes.")


class RunnerConfig(Section):
    batch_size: int = Field(16, ge=1, description="Input records per batch; a batch is one Prefect task.")
    task_runner: Literal["thread", "dask", "ray"] = Field("thread")
    address: str | None = Field(None, description="Existing Dask scheduler or Ray cluster address.")
    retries: int = Field(2, ge=0, description="Task retries on engine errors.")


class RunConfigBase(Section):
    # Dotted fields of the recipe's section that name files, with the noun errors use ("lexicon not found: …"):
    # relative paths resolve against the config file's folder, like ``input.path``.
    file_fields: ClassVar[dict[str, str]] = {}
    recipe: str

    input: InputConfig
    languages: list[str] = Field(min_length=1, description="ISO 639-1/3 codes of target languages.")
    engine: EngineConfig = Field(default_factory=EngineConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    lid: LidConfig = Field(default_factory=LidConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)

    @field_validator("languages")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        codes = [code.strip().lower() for code in value]
        bad = [code for code in codes if not LANG_CODE.match(code)]
        if bad:
            raise ValueError(f"not ISO 639 language codes: {', '.join(bad)}")
        if len(set(codes)) != len(codes):
            raise ValueError("duplicated language codes")
        return codes

    def content_hash(self) -> str:
        """Hash of everything that changes what is generated (not where it goes, how many, or how it runs)."""
        payload = self.model_dump(mode="json", exclude={"output": {"dir"}, "runner": True, "input": {"limit"}})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
