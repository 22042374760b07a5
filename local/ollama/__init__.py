"""An Ollama-API-compatible model server for development and CI (``python -m local ollama``).

Not a replacement for Ollama in production (compose and AWS use the real one): it serves one
model through an engine — ``llama`` (a real GGUF model through llama-cpp-python, SmolLM2-135M
by default) or ``echo`` (deterministic, no model, for fast tests) — with Ollama's wire shapes,
and like Ollama with ``OLLAMA_NUM_PARALLEL=1`` it runs one generation at a time.
"""
