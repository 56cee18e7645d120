"""The run: prepare (check every input), then stage by stage train → save → evaluate, then score and report.

``prepare`` checks, ``loop`` orchestrates, ``stage`` holds the model and method across stages,
``train`` / ``evaluate`` do one stage's work, ``checkpoint`` / ``resume`` / ``layout`` / ``manifest``
describe the run folder, ``signals`` and ``distributed`` the processes, ``experiment`` many runs.
Import the submodules directly; this package imports nothing heavy on its own.
"""
