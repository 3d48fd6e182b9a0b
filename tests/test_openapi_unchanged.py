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

# (JSON pointer, value in the golden document, value now, why). Empty while nothing changed.
FIXES: list[tuple[str, Any, Any, str]] = []


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
        assert parent.get(key) == before, f"the golden document has no {before!r} at {pointer}"
        if after is None:
            del parent[key]
        else:
            parent[key] = after
    return doc


async def test_the_served_document_is_the_golden_one_plus_the_listed_fixes(client):
    response = await client.get("/openapi.json")
    assert response.status == 200
    served = await response.json()
    assert served == expected_document(served["info"]["version"])
