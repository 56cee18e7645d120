"""Reports of finished runs: tables (Markdown, CSV, JSON, LaTeX), plots and the published figures.

Import the submodules directly; this package imports nothing heavy on its own.
"""
