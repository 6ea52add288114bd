"""The command-line reference (``docs/cli.md``), generated from the real argparse parsers.

Every subcommand of :data:`besa.cli.COMMANDS` is built by :func:`besa.cli._parser_for`, the same code
``besa COMMAND --help`` runs, so the reference cannot drift from the parsers: a flag added without
regenerating fails ``tests/test_cli_reference.py``.  Nothing here names a command module; building a
command's parser imports only what that command imports (``prune``, ``eval`` and ``export`` need torch).

The output is deterministic: no terminal width, no argparse help formatter, commands in
:data:`~besa.cli.COMMANDS` order and flags in the order the parser declares them.

    python -m besa.clidoc --out docs/cli.md     # regenerate (what ``make docs`` runs)
    python -m besa.clidoc --check docs/cli.md   # exit 1 when the file is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from besa import cli
from besa_common.fileio import atomic_write_text

REGENERATE = "make docs"  # the command that rewrites docs/cli.md (named in the stale-file message)
_WIDTH = 100  # usage lines are wrapped at this many characters
_DEFAULT_GROUPS = {"positional arguments", "options", "optional arguments"}

HEADER = """\
# Command-line reference

<!-- Generated from the real argument parsers by `make docs` (python -m besa.clidoc --out docs/cli.md).
     Do not edit by hand: tests/test_cli_reference.py fails when this file differs from the parsers. -->

Every `besa` subcommand, its usage, and every flag with its help text and default, exactly as
`besa COMMAND --help` knows them. What the commands do, their files and the measured results:
[README](../README.md), [docs/](.). Bad input exits with status 2 and one line on stderr; see
[reliability.md](reliability.md).
"""


def _sub_action(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``besa NAME``, with its arguments, built by the CLI itself."""
    parser, _module = cli._parser_for(name)
    sub = _sub_action(parser)
    assert sub is not None, "besa.cli builds no subcommands"
    return sub.choices[name]


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest if not action.option_strings else action.dest.upper()


def _args_part(action: argparse.Action) -> str:
    """What follows the option string (or stands alone for a positional), as argparse writes it."""
    m = _metavar(action)
    nargs = action.nargs
    if nargs == 0:
        return ""
    if nargs is None:
        return m
    if nargs == "?":
        return f"[{m}]"
    if nargs == "*":
        return f"[{m} ...]"
    if nargs == "+":
        return f"{m} [{m} ...]"
    if nargs == argparse.REMAINDER:
        return "..."
    if nargs == argparse.PARSER:
        return f"{m} ..."
    return " ".join([m] * int(nargs))


def _invocation(action: argparse.Action) -> str:
    if not action.option_strings:
        return _args_part(action)
    part = _args_part(action)
    return ", ".join(f"{o} {part}".rstrip() for o in action.option_strings)


def _usage_item(action: argparse.Action) -> str:
    if not action.option_strings:
        return _args_part(action)
    return f"{action.option_strings[-1]} {_args_part(action)}".rstrip()


def _visible(action: argparse.Action) -> bool:
    return action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction)


def usage(parser: argparse.ArgumentParser) -> str:
    """``usage: PROG ...``: required flags bare, optional ones in brackets, exclusive groups joined by |."""
    items: list[str] = []
    done: set[int] = set()
    for action in parser._actions:
        if id(action) in done or not _visible(action):
            continue
        group = next((g for g in parser._mutually_exclusive_groups if action in g._group_actions), None)
        if group is not None:
            members = [a for a in group._group_actions if _visible(a)]
            done.update(id(a) for a in members)
            inner = " | ".join(_usage_item(a) for a in members)
            items.append(f"({inner})" if group.required else f"[{inner}]")
            continue
        item = _usage_item(action)
        items.append(item if (action.required or not action.option_strings) else f"[{item}]")
    lines, line = [], f"usage: {parser.prog}"
    indent = " " * len(f"usage: {parser.prog} ")
    for item in items:
        if len(line) + 1 + len(item) > _WIDTH and line.strip() != f"usage: {parser.prog}":
            lines.append(line)
            line = indent + item
        else:
            line = f"{line} {item}"
    lines.append(line)
    return "\n".join(lines)


def _help(action: argparse.Action, prog: str) -> str:
    if isinstance(action, argparse._SubParsersAction):  # its help is the list of its subcommands
        return "; ".join(f"{c.dest}: {' '.join((c.help or '').split())}" for c in action._choices_actions)
    text = " ".join((action.help or "").split())
    if "%" in text:  # argparse's own expansion: %(default)s, %(choices)s, %(prog)s ...
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        if params.get("choices") is not None:
            params["choices"] = ", ".join(str(c) for c in params["choices"])
        text = text % dict(params, prog=prog)
    return text


def _default(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    if action.required:
        return "required"
    group = next((g for g in parser._mutually_exclusive_groups if action in g._group_actions), None)
    if group is not None and group.required:
        return "one of " + " / ".join(a.option_strings[-1] for a in group._group_actions if _visible(a))
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS, [], ""):
        return ""
    return f"`{action.default}`"


def _cell(text: str) -> str:
    """Text safe in a Markdown table cell: | splits cells, <x> would be read as HTML, * as emphasis."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*")


def _table(actions: list[argparse.Action], parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | default | meaning |", "|---|---|---|"]
    for action in actions:
        arg = "`" + _invocation(action).replace("|", "\\|") + "`"  # inside a code span only | needs escaping
        default = _default(action, parser).replace("|", "\\|")
        rows.append(f"| {arg} | {default} | {_cell(_help(action, parser.prog))} |")
    return rows


def _render_parser(parser: argparse.ArgumentParser, level: int) -> list[str]:
    out = [f"{'#' * level} {parser.prog}", ""]
    if parser.description:
        out += [" ".join(parser.description.split()), ""]
    out += ["```text", usage(parser), "```", ""]
    # argparse's two default groups (positionals, options) make one table; every named group its own
    plain = [a for g in parser._action_groups if g.title in _DEFAULT_GROUPS for a in g._group_actions if _visible(a)]
    if plain:
        out += _table(plain, parser) + [""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if _visible(a)]
        if group.title in _DEFAULT_GROUPS or not actions:
            continue
        out += [f"*{group.title}*" + (f": {' '.join(group.description.split())}" if group.description else ""), ""]
        out += _table(actions, parser) + [""]
    sub = _sub_action(parser)
    if parser.epilog:
        out += [" ".join(parser.epilog.split()), ""]
    if sub is not None:
        for child in sub.choices.values():
            out += _render_parser(child, level + 1)
    return out


def render() -> str:
    """The whole of docs/cli.md, as a string."""
    top, _module = cli._parser_for(None)
    out = [HEADER, "```text", usage(top), "```", ""]
    out += ["| command | what it does |", "|---|---|"]
    for name, (_modname, help_) in cli.COMMANDS.items():
        out.append(f"| [`besa {name}`](#besa-{name}) | {_cell(help_)} |")
    out.append("")
    for name in cli.COMMANDS:
        out += _render_parser(command_parser(name), 2)
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m besa.clidoc", description="write (or check) the CLI reference")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", metavar="FILE", help="write the reference here (docs/cli.md)")
    mode.add_argument("--check", metavar="FILE", help="exit 1 when FILE differs from the parsers")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        path = Path(args.check)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            print(f"{path} is stale: regenerate it with `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    atomic_write_text(Path(args.out), text)
    print(f"wrote {args.out} ({len(cli.COMMANDS)} commands)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
