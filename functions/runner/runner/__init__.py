"""The runner: lets exactly one generation at a time reach Ollama, with a bounded, fair queue."""
