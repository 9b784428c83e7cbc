"""Benchmarks of the training step: throughput, FLOPs, and the official-style baseline."""
