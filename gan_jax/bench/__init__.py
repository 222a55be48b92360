"""Benchmarks, each `python -m gan_jax.bench.<name>` (`--help` for its flags).

  throughput       training steps/s per model family (and the PyTorch baseline, `torch` extra)
  input_wait       how long the training loop waits for input
  memory           device memory of a training step, and the largest batch that fits
  device_check     one prepared GPU / TPU check: step rate against the bf16 matmul rate, FID speed
  toy              mode collapse on the 2-D Gaussian mixtures (PacGAN protocol)
  digits_check     a digits run's samples judged by a calibrated classifier
  little_data      digits on 10% / 25% of the training split, with and without DiffAugment
  semi_supervised  the semi-supervised GAN's test accuracy against its supervised baseline

docs/benchmarks.md and docs/performance.md record what they measured. Not imported
by training code.
"""
