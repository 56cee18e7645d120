"""Watching a run: progress lines, logs, trackers, signals."""
