"""Every relative link in the Markdown docs points at a file of the repository and, with ``#anchor``,
at a heading of that file (GitHub's heading ids)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "CONTRIBUTING.md", "DESIGN.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^()\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^()\s>]+)>?\s*\)")
_CODE_SPAN = re.compile(r"(`+)(?:.+?)\1")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto: ...


def prose_lines(text: str, strip_code: bool = True) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code spans removed unless told not to."""
    out, fenced = [], False
    for i, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((i, _CODE_SPAN.sub("", line) if strip_code else line))
    return out


def slug(heading: str) -> str:
    """GitHub's id of a heading: the rendered text, lower case, punctuation dropped, spaces -> hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links -> their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _i, line in prose_lines(path.read_text(encoding="utf-8"), strip_code=False):
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    out |= set(re.findall(r'<a\s+(?:id|name)="([^"]+)"', path.read_text(encoding="utf-8")))
    return out


def links(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    return [(i, m.group(1)) for i, line in prose_lines(text) for rx in (_LINK, _IMAGE) for m in rx.finditer(line)]


def test_slug_matches_github():
    assert slug("The main job: `besa run`, reports, what-if sweeps") == "the-main-job-besa-run-reports-what-if-sweeps"
    assert slug("1. The machine (a hardware preset, `configs/hw/*.toml`)") == "1-the-machine-a-hardware-preset-configshwtoml"
    assert slug("BESA + weight update, 50 % — token for token") == "besa--weight-update-50---token-for-token"


def test_links_are_found_outside_code(tmp_path):
    f = tmp_path / "x.md"
    f.write_text("# Title `x`\n[a](b.md#c) `[not](x.md)` ![img](i.png)\n```\n[no](y.md)\n```\n[d](#title-x) [e](https://x.org)\n")
    assert links(f) == [(2, "b.md#c"), (2, "i.png"), (6, "#title-x"), (6, "https://x.org")]
    assert anchors(f) == {"title-x"}


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_resolve(doc):
    path = ROOT / doc
    if not path.is_file():
        pytest.skip(f"{doc} does not exist")
    bad = []
    for line, target in links(path):
        if _EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if ROOT not in dest.parents and dest != ROOT:
            bad.append(f"{doc}:{line}: {target} points outside the repository")
        elif not dest.exists():
            bad.append(f"{doc}:{line}: {target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{doc}:{line}: {target}: no heading with id #{anchor} in {dest.relative_to(ROOT)}")
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_the_docs_exist():
    for doc in ("README.md", "CONTRIBUTING.md", "DESIGN.md", "docs/results.md", "docs/cli.md"):
        assert (ROOT / doc).is_file(), doc
