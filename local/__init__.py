"""Local emulation of what the deployed product relies on: ``python -m local up|ollama|invoke|event``."""
