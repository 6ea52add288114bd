"""``besa data``: extract the offline corpora (run once by scripts/setup.sh) or show what is there."""

from __future__ import annotations

import json

from besa_common.fileio import check_output_path
from pruning import data

HELP = "prepare the offline corpora (run once by the set-up script)"


def add_arguments(parser) -> None:
    parser.add_argument("action", choices=["prepare", "info"], help="prepare: extract wiki/news/novel into $BESA_CACHE/data; info: print their sizes")
    parser.add_argument("--force", action="store_true", help="re-extract even if already prepared")
    parser.add_argument("--only", choices=["wiki", "news", "novel"], action="append", help="limit to these corpora (repeatable)")


def run(args) -> int:
    names = tuple(args.only) if args.only else data.OFFLINE
    if args.action == "prepare":
        check_output_path(data.data_root(), flag="the data folder ($BESA_CACHE/data)")  # before extracting anything
        data.prepare(names, force=args.force)
        return 0
    print(json.dumps(data.corpus_info(names), indent=2, sort_keys=True))
    return 0
