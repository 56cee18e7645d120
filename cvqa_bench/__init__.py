"""cvqa-bench: a benchmark harness for continual visual instruction tuning."""
__version__ = "0.1.0"
