"""WECHAT_VERIFY_FILES: WeChat's MP_verify_<code>.txt at the root of the 网页授权域名."""

from __future__ import annotations

import pytest
from test_config import PRODUCTION_ENV

from flows import assert_error_shape
from service.config import ConfigError, load_settings

NAME = "MP_verify_Ab12Cd34Ef56Gh78.txt"
CODE = b"Ab12Cd34Ef56Gh78"


@pytest.fixture
def verify_file(tmp_path):
    path = tmp_path / NAME
    path.write_bytes(CODE)
    return path


async def test_each_file_is_served_at_the_root_as_text(make_client, verify_file, tmp_path):
    other = tmp_path / "MP_verify_zz9.txt"
    other.write_bytes(b"zz9")
    client = await make_client(wechat_verify_files=(str(verify_file), str(other)))
    resp = await client.get(f"/{NAME}")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    assert await resp.read() == CODE
    assert resp.headers["X-Request-ID"]  # through the middleware, like every answer
    assert await (await client.get("/MP_verify_zz9.txt")).read() == b"zz9"
    head = await client.head(f"/{NAME}")
    assert head.status == 200


async def test_only_the_configured_files_and_only_get_and_head(make_client, verify_file):
    client = await make_client(wechat_verify_files=(str(verify_file),))
    for path in ("/MP_verify_other.txt", f"/{NAME.lower()}", f"/x/{NAME}", "/wechat/x"):
        resp = await client.get(path)
        assert resp.status == 404, path
        assert_error_shape(await resp.json(), 404, "NOT_FOUND", "path")
    posted = await client.post(f"/{NAME}")
    assert posted.status == 404


async def test_nothing_is_served_without_the_setting(client):
    assert (await client.get(f"/{NAME}")).status == 404


async def test_the_files_stay_out_of_the_api_document(make_client, verify_file):
    """They are WeChat's check of the domain, no operation of the API: no route either."""
    plain = await make_client()
    client = await make_client(wechat_verify_files=(str(verify_file),))
    documented = await (await client.get("/openapi.json")).json()
    assert documented["paths"] == (await (await plain.get("/openapi.json")).json())["paths"]
    assert not any("MP_verify" in str(r.resource) for r in client.app.router.routes())


def test_the_setting_is_read_at_start_up(verify_file):
    settings = load_settings({**PRODUCTION_ENV, "WECHAT_VERIFY_FILES": str(verify_file)})
    assert settings.wechat_verify_files == (str(verify_file),)


@pytest.mark.parametrize(
    ("name", "content", "complaint"),
    [
        ("verify.txt", b"x", "MP_verify_"),
        ("MP_verify_abc.html", b"x", "MP_verify_"),
        ("MP_verify_a-b.txt", b"x", "MP_verify_"),
        ("MP_verify_big.txt", b"x" * 4097, "4096 bytes"),
    ],
)
def test_other_names_and_large_files_stop_start_up(tmp_path, name, content, complaint):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=rf"WECHAT_VERIFY_FILES.*{complaint}"):
        load_settings({**PRODUCTION_ENV, "WECHAT_VERIFY_FILES": str(path)})


def test_a_missing_file_or_one_named_twice_stops_start_up(tmp_path, verify_file):
    missing = tmp_path / "MP_verify_gone.txt"
    with pytest.raises(ConfigError, match=r"WECHAT_VERIFY_FILES: cannot read .*MP_verify_gone"):
        load_settings({**PRODUCTION_ENV, "WECHAT_VERIFY_FILES": str(missing)})
    (tmp_path / "again").mkdir()
    twice = tmp_path / "again" / NAME
    twice.write_bytes(CODE)
    with pytest.raises(ConfigError, match="twice"):
        load_settings({**PRODUCTION_ENV, "WECHAT_VERIFY_FILES": f"{verify_file},{twice}"})
