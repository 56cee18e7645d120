"""Benchmarks behind ``benchmarks/*.py``: method step time and state memory, batched generation."""
