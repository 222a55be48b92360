"""Benchmarks: `python -m gan_jax.bench.throughput` (training-step and Inception speed).

Not imported by training code; the optional PyTorch baseline needs the `torch` extra.
"""
