"""``besa report DIR... [--out DIR]``: regenerate the tables and the HTML report from run directories.

Each DIR is a run directory, a folder of them (``besa run --out DIR``) or a sweep output; see
:mod:`reports.build`.  Writes OUT/report.html, OUT/figures/*.svg (+ pdf/png with ``--format``),
OUT/table.csv, OUT/summary.csv and OUT/report.md (OUT defaults to the first DIR).  Never imports torch.
"""

from __future__ import annotations

from reports.build import build_report

HELP = "regenerate the tables and the HTML report from run directories"


def add_arguments(parser) -> None:
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run directories, folders of runs (besa run --out), or sweep outputs")
    parser.add_argument("--out", default=None, help="where to write report.html, table.csv, summary.csv, report.md (default: the first DIR)")
    parser.add_argument("--title", default="besa report", help="page title")
    parser.add_argument("--format", default="", metavar="FMT[,FMT]", help="also write every figure as pdf and/or png in OUT/figures/ (SVG is always written)")


def run(args) -> int:
    path = build_report(args.dirs, args.out, args.title, formats=[f for f in args.format.split(",") if f.strip()])
    print(f"report: {path}")
    return 0
