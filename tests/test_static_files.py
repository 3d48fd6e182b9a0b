"""/static/…: the pages' assets, and a missing one answered in the one error shape."""

from __future__ import annotations

import pytest

from flows import assert_error_shape


async def test_a_static_file_is_served_with_its_type_and_validators(client):
    resp = await client.get("/static/app.css")
    assert resp.status == 200
    assert resp.content_type == "text/css"
    etag = resp.headers["ETag"]
    again = await client.get("/static/app.css", headers={"If-None-Match": etag})
    assert again.status == 304


@pytest.mark.parametrize(
    "path",
    ["/static/nope.js", "/static/docs/nope.css", "/static/%2e%2e/pyproject.toml", "/static/docs"],
)
async def test_a_missing_or_outside_file_is_a_404_in_the_error_shape(client, path):
    resp = await client.get(path)
    assert resp.status == 404
    assert resp.content_type == "application/json"
    assert_error_shape(await resp.json(), 404, "NOT_FOUND", "path")
