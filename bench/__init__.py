"""Benchmarks (``make bench``): real servers on loopback, numbers printed and written to bench/results/."""
