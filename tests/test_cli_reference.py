"""docs/cli.md is generated from the real parsers (besa.clidoc); it must match them exactly."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from besa import cli, clidoc

ROOT = Path(__file__).resolve().parent.parent
CLI_MD = ROOT / "docs" / "cli.md"


@pytest.fixture(scope="module")
def rendered() -> str:
    return clidoc.render()


def test_docs_cli_md_is_current(rendered):
    assert CLI_MD.is_file(), f"docs/cli.md is missing: generate it with `{clidoc.REGENERATE}`"
    assert CLI_MD.read_text(encoding="utf-8") == rendered, (
        f"docs/cli.md is stale (a flag, help text or default changed): regenerate it with `{clidoc.REGENERATE}`"
    )


def test_every_command_and_flag_is_in_the_reference(rendered):
    for name in cli.COMMANDS:
        assert f"\n## besa {name}\n" in rendered, name
        parser = clidoc.command_parser(name)
        for action in parser._actions:
            for opt in action.option_strings:
                if opt not in ("-h", "--help"):
                    assert f"`{opt}" in rendered or f", {opt}" in rendered, f"besa {name} {opt}"


def _fake_command(monkeypatch, add_arguments) -> None:
    mod = types.ModuleType("besa_clidoc_test_cmd")
    mod.add_arguments = add_arguments
    mod.run = lambda args: 0
    monkeypatch.setitem(sys.modules, "besa_clidoc_test_cmd", mod)
    monkeypatch.setattr(cli, "COMMANDS", {"zz": ("besa_clidoc_test_cmd", "a test command")})
    monkeypatch.setattr(cli, "NEEDS", {})


def test_a_new_flag_changes_the_reference(monkeypatch):
    """What the staleness test relies on: a flag's name, help, default and choices all reach the text."""

    def add_arguments(p):
        p.add_argument("path", metavar="SRC", help="input <file>")
        p.add_argument("--out", required=True, metavar="DIR", help="where | to write")
        p.add_argument("--level", type=int, default=3, choices=[1, 3], help="how much (default %(default)s)")
        g = p.add_argument_group("tuning", "knobs")
        g.add_argument("--fast", action="store_true", help="go *fast*")

    _fake_command(monkeypatch, add_arguments)
    text = clidoc.render()
    assert "## besa zz\n\na test command\n" in text
    assert "usage: besa zz SRC --out DIR [--level {1,3}] [--fast]" in text
    assert "| `SRC` | required | input &lt;file&gt; |" in text
    assert "| `--out DIR` | required | where \\| to write |" in text
    assert "| `--level {1,3}` | `3` | how much (default 3) |" in text
    assert "*tuning*: knobs" in text and "| `--fast` |  | go \\*fast\\* |" in text

    def more(p):
        add_arguments(p)
        p.add_argument("--new-flag", help="added later")

    _fake_command(monkeypatch, more)
    assert clidoc.render() != text


def test_exclusive_groups_and_subcommands(monkeypatch):
    def add_arguments(p):
        src = p.add_mutually_exclusive_group(required=True)
        src.add_argument("--a", metavar="X")
        src.add_argument("--b", metavar="Y")
        sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
        s = sub.add_parser("go", help="do it", description="go somewhere")
        s.add_argument("--far", action="store_true", help="far away")

    _fake_command(monkeypatch, add_arguments)
    text = clidoc.render()
    assert "usage: besa zz (--a X | --b Y) ACTION ..." in text
    assert "| `--a X` | one of --a / --b |" in text
    assert "| `ACTION ...` | required | go: do it |" in text
    assert "### besa zz go\n\ngo somewhere\n" in text and "| `--far` |  | far away |" in text


def test_render_ignores_the_terminal_width(monkeypatch, rendered):
    monkeypatch.setenv("COLUMNS", "40")
    assert clidoc.render() == rendered


def test_check_mode(tmp_path, rendered, capsys):
    f = tmp_path / "cli.md"
    f.write_text(rendered, encoding="utf-8")
    assert clidoc.main(["--check", str(f)]) == 0
    f.write_text(rendered + "x", encoding="utf-8")
    assert clidoc.main(["--check", str(f)]) == 1
    assert clidoc.REGENERATE in capsys.readouterr().err
    out = tmp_path / "new.md"
    assert clidoc.main(["--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == rendered
