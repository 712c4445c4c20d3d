"""vLLM settings that depend on the device, shared by the in-process engine and the ``vllm serve`` command line.

:mod:`synth.llm.vllm_engine` (``VLLMEngine``) and :mod:`synth.llm.model` (``serve_model_command``) both read them,
so a run and a served model start vLLM alike. Importing this module is cheap: torch is imported only when
:func:`cuda_available` is first called, vLLM never.
"""

from __future__ import annotations

import functools
import os

# On CPU, vLLM's gpu_memory_utilization is a share of the NUMA node's RAM that must cover the whole
# process (torch, vLLM, weights) *and* the KV cache: 0.9 asks for more than is free, and 0.15 fails too where
# the node is small (a sandbox reported 8.6 of 24 GiB on node 0 and the process alone used 2.5 GiB). A fixed
# KV cache size works everywhere, and with eager mode it lets vLLM skip its warm-up pass at start.
# 1 GiB holds ~58k tokens of Gemma 3 270M (18 KiB/token in bf16).
CPU_KV_CACHE_BYTES = 1 << 30
# vLLM's CPU default of prompt tokens per engine step (offline LLM); raised to max_model_len when that is longer.
CPU_MAX_BATCHED_TOKENS = 4096
# JSON-schema output without free whitespace: small models otherwise pad with newlines and spaces until max_tokens
# cuts the JSON off. Only xgrammar and guidance support it, so "auto" (xgrammar with fallbacks) becomes xgrammar.
STRUCTURED_OUTPUTS_CONFIG = {"backend": "xgrammar", "disable_any_whitespace": True}


@functools.cache
def cuda_available() -> bool:
    """Whether torch sees a CUDA device (the CPU build of torch never does)."""
    import torch

    return torch.cuda.is_available()


def cpu_list() -> str:
    """The CPUs this process may run on, as a vLLM CPU list ("0-1", "0,2,4")."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if cpus == list(range(cpus[0], cpus[-1] + 1)):
        return f"{cpus[0]}-{cpus[-1]}"
    return ",".join(str(cpu) for cpu in cpus)


def cpu_environment(*, in_process: bool = True) -> dict[str, str]:
    """Environment variables for vLLM on CPU, leaving out any the user already set.

    * ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (``in_process`` only): run the engine core in this process;
      start takes ~25 s instead of ~65 s and there is no child process to leak.
    * ``VLLM_CPU_OMP_THREADS_BIND``: bind OpenMP threads to every allowed core. vLLM's automatic binding
      keeps one logical CPU per physical core and reserves some, which was 1.6× slower on small machines.
    """
    wanted = {"VLLM_CPU_OMP_THREADS_BIND": cpu_list()}
    if in_process:
        wanted["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    return {key: value for key, value in wanted.items() if key not in os.environ}
