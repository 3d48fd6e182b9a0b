"""/openapi.json is the contract apps are built against: a refactoring must not change it.

`golden/openapi.json` is the document as it was before the layout of issue 12 (version 0.1.0,
server http://localhost:3000 as in the test settings). The document served today must equal it,
apart from the deliberate fixes listed in FIXES, each with its reason. Any other change fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).parent / "golden" / "openapi.json"

# (JSON pointer to a text, the words it had, the words it has now, why).
FIXES: list[tuple[str, str, str, str]] = [
    (
        "/paths/~1wechat~1message/post/responses/400/description",
        "(given twice or too long)",
        "(given twice or too long, an encrypt_type other than aes)",
        "encrypt_type is declared as the enum [aes] and now held to it (400), as the document "
        "said; before, any other value was read as a plain push",
    ),
    (
        "/info/description",
        "the sandbox tag and the README",
        "the sandbox tag and docs/sandbox.md",
        "the emulator's reference moved from the README to docs/sandbox.md",
    ),
    (
        "/tags/7/description",
        'see the README\'s "The WeChat emulator" section',
        "see docs/sandbox.md in the repository",
        "the emulator's reference moved from the README to docs/sandbox.md",
    ),
]


def _resolve(doc: Any, pointer: str) -> tuple[Any, str]:
    *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]
    for part in parents:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc, last


def expected_document(version: str) -> dict[str, Any]:
    doc = json.loads(GOLDEN.read_text())
    doc["info"]["version"] = version  # the version moves with each release, by design
    for pointer, before, after, _why in FIXES:
        parent, key = _resolve(doc, pointer)
        text = parent[int(key)] if isinstance(parent, list) else parent[key]
        assert before in text, f"the golden document has no {before!r} at {pointer}"
        parent[int(key) if isinstance(parent, list) else key] = text.replace(before, after)
    return doc


def differences(before: Any, after: Any, pointer: str = "") -> list[str]:
    """The JSON pointers where two documents differ, so a failure says where."""
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(before.keys() | after.keys()):
            where = f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}"
            if key not in before or key not in after:
                found.append(f"{where}: {before.get(key)!r} -> {after.get(key)!r}")
            else:
                found += differences(before[key], after[key], where)
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [
            d
            for i, (b, a) in enumerate(zip(before, after, strict=True))
            for d in differences(b, a, f"{pointer}/{i}")
        ]
    return [] if before == after else [f"{pointer}: {before!r} -> {after!r}"]


async def test_the_served_document_is_the_golden_one_plus_the_listed_fixes(client):
    response = await client.get("/openapi.json")
    assert response.status == 200
    served = await response.json()
    assert differences(expected_document(served["info"]["version"]), served) == []
