"""The README and docs/: every relative link leads somewhere, and none leads out of the repository.

A reader of the checkout (or of a copy without network) must be able to follow every link, so
the documentation links only to files in the repository. Code (fenced blocks and `inline`
spans) is not a link and is left out; a bare http://localhost:3000/ is plain text, not a link.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.DOTALL)
# [text](target) and ![alt](target), with an optional "title"; [label]: target definitions.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]*:[^\s<>]*)>")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
LOCALHOST = re.compile(r"^https?://(localhost|127\.0\.0\.1)(:\d+)?(/|$)")


def prose(text: str) -> str:
    """The text without code, where a link-like string is not a link."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def targets(document: Path) -> list[str]:
    text = prose(document.read_text())
    found = INLINE_LINK.findall(text) + DEFINITION.findall(text) + AUTOLINK.findall(text)
    return [target for target in found if target]


def anchors(document: Path) -> set[str]:
    """The anchors GitHub gives the document's headings (lower case, punctuation dropped,
    spaces to hyphens, -1, -2… for repeats)."""
    seen: dict[str, int] = {}
    slugs = set()
    headings = HEADING.findall(FENCE.sub("", document.read_text()))
    for heading in headings:
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        slugs.add(slug if count == 0 else f"{slug}-{count}")
    return slugs


def broken_links(document: Path) -> list[str]:
    broken = []
    for target in targets(document):
        if SCHEME.match(target):
            continue  # external: test_no_link_leaves_the_repository's business
        path_part, _, fragment = target.partition("#")
        linked = (document.parent / unquote(path_part)).resolve() if path_part else document
        if not linked.is_relative_to(ROOT):
            broken.append(f"{target} (outside the repository)")
        elif not linked.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target} (no such heading)")
    return broken


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_of_the_repository(document):
    assert broken_links(document) == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_link_leaves_the_repository(document):
    external = [
        target
        for target in targets(document)
        if SCHEME.match(target) and not LOCALHOST.match(target)
    ]
    assert external == []


def test_the_documents_are_there():
    """The README's Documentation section links these; the checks above read them all."""
    names = {p.name for p in DOCUMENTS}
    expected = {"api.md", "settings.md", "operations.md", "sandbox.md", "development.md"}
    assert {"README.md", *expected} <= names


def test_the_checks_see_a_broken_and_an_external_link(tmp_path, monkeypatch):
    """The checks themselves: a broken relative link, a missing heading and an external link are
    found; code spans and localhost are not links."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# There\n\n## A heading\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/there.md) [ok](docs/there.md#a-heading) [gone](docs/missing.md)\n"
        "[no heading](docs/there.md#nowhere) [out](../elsewhere.md)\n"
        "[web](https://example.com/) <https://example.org/> [local](http://localhost:3000/)\n"
        "`[code](https://example.net/)` and\n```\n[fenced](https://example.net/)\n```\n"
    )
    assert broken_links(page) == [
        "docs/missing.md (no such file)",
        "docs/there.md#nowhere (no such heading)",
        "../elsewhere.md (outside the repository)",
    ]
    assert [t for t in targets(page) if SCHEME.match(t) and not LOCALHOST.match(t)] == [
        "https://example.com/",
        "https://example.org/",
    ]
