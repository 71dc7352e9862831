"""dmtl benchmarks: evidence for ``docs/benchmarks.md`` (not tests).

Run from the repository root::

    python -m benchmarks [quality|cost|ddp|loader|all|report] [--quick]

Each section writes ``benchmarks/results/<name>.json`` (with the command that
produced it); ``python -m benchmarks report`` rebuilds ``docs/benchmarks.md`` and its
plots from the JSON files present, so one section can be re-run alone.
"""
