"""CoIN-format task data: loading and validation, data-root resolution, and the synthetic generator.

Import the submodules directly (``cvqa_bench.data.coin``, ``.sources``, ``.synthetic``); this
package imports nothing heavy on its own.
"""
