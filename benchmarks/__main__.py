"""``python -m benchmarks [SECTION|all|report] [--quick] [section options]``.

SECTION: quality, cost, ddp, loader, faces or shards.

Each section writes ``benchmarks/results/<section>.json`` (``--quick``: a scratch folder
under the system's temporary directory, so a smoke run never replaces real figures) and
then rebuilds the Markdown report from every JSON file present: ``docs/benchmarks.md``
(``--quick``: ``benchmarks.md`` in the scratch folder). ``report`` only rebuilds it.
Options after the section name go to that section (``python -m benchmarks cost --help``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.common import DOC_PATH, QUICK_DIR, RESULTS_DIR

SECTIONS = ("quality", "cost", "ddp", "loader", "faces", "shards")


def _section_main(name: str) -> Callable[..., object]:
    if name == "quality":
        from benchmarks import quality

        return quality.main
    if name == "cost":
        from benchmarks import cost

        return cost.main
    if name == "ddp":
        from benchmarks import ddp

        return ddp.main
    if name == "loader":
        from benchmarks import loader_section

        return loader_section.main
    if name == "faces":
        from benchmarks import faces

        return faces.main
    if name == "shards":
        from benchmarks import shards

        return shards.main
    raise ValueError(name)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("section", nargs="?", default="all",
                        choices=[*SECTIONS, "all", "report"])
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, tiny sizes")
    parser.add_argument("--results", type=Path, default=None,
                        help="folder of the JSON results (default benchmarks/results)")
    parser.add_argument("--doc", type=Path, default=None,
                        help="Markdown report to write (default docs/benchmarks.md)")
    args, rest = parser.parse_known_args(argv)
    results = args.results or (QUICK_DIR if args.quick else RESULTS_DIR)
    doc = args.doc or (results / "benchmarks.md" if args.quick else DOC_PATH)
    sections = list(SECTIONS) if args.section == "all" else (
        [] if args.section == "report" else [args.section])
    if args.section == "all" and rest:
        parser.error(f"options {rest} only go with a single section")
    for name in sections:
        start = time.perf_counter()
        print(f"== {name} ==", flush=True)
        section_argv = [*(["--quick"] if args.quick else []), *rest]
        _section_main(name)(section_argv, results_dir=results)
        print(f"== {name} done in {time.perf_counter() - start:.0f} s ==", flush=True)
    from benchmarks.report import write_report

    path = write_report(results, doc)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
