"""The chat gateway: the public API. Validates, applies limits, and proxies to the runner."""
