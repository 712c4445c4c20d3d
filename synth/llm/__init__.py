"""LLM engines behind one batched interface (see ``synth.llm.base``)."""
