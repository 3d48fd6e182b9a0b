"""APP_NAME and APP_LOGO_FILE: shown on the callback and QR sign-in pages, the logo served
under /static/ and checked at start; the shipped icon otherwise."""

from __future__ import annotations

import re
import struct
import zlib

import pytest

from service.config import ConfigError, load_settings
from service.pipeline.branding import MAX_LOGO_BYTES, image_type


def png(width: int = 1, height: int = 1) -> bytes:
    """A real PNG: one white pixel by default."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xff\xff\xff" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- the logo -->\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 8 8"><rect width="8" height="8"/></svg>'
)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (png(), "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"\x00\x00\x01\x00\x01\x00\x10\x10", "image/x-icon"),
        (SVG, "image/svg+xml"),
        (b"\xef\xbb\xbf  <svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        (b"<svgx>", None),
        (b"\xef\xbb\xbf<svg>", "image/svg+xml"),
        (b"GIF89a\x01\x00", None),
        (b"<html><svg></svg></html>", None),
        (b"\x00\x00\x01\x00\x00\x00", None),  # an ICO header without an image
        (b"hello", None),
        (b"", None),
    ],
)
def test_an_image_is_known_by_its_bytes(content, expected):
    assert image_type(content) == expected


def sandbox_env(**more: str) -> dict[str, str]:
    return {"SANDBOX": "1", "TOKEN_UPKEEP": "0", **more}


def test_a_good_logo_and_name_start(tmp_path):
    logo = tmp_path / "logo.png"
    logo.write_bytes(png())
    settings = load_settings(sandbox_env(APP_LOGO_FILE=str(logo), APP_NAME="Acme 商城"))
    assert settings.app_logo_file == str(logo)
    assert settings.app_name == "Acme 商城"
    assert load_settings(sandbox_env()).app_name == "wechat-oa-auth"  # the default


@pytest.mark.parametrize(
    ("write", "says"),
    [
        (None, "cannot read"),
        (b"just some text, not an image", "not a PNG, JPEG, WebP, ICO or SVG image"),
        (b"GIF89a\x01\x00\x01\x00", "not a PNG, JPEG, WebP, ICO or SVG image"),
        (png() + b"\x00" * MAX_LOGO_BYTES, "a logo may have at most 262144"),
    ],
    ids=["missing", "text", "gif", "too-large"],
)
def test_a_bad_logo_stops_the_start_naming_the_setting(tmp_path, write, says):
    logo = tmp_path / "logo.png"
    if write is not None:
        logo.write_bytes(write)
    with pytest.raises(ConfigError, match="APP_LOGO_FILE") as refused:
        load_settings(sandbox_env(APP_LOGO_FILE=str(logo)))
    assert says in str(refused.value)


def test_a_directory_is_no_logo(tmp_path):
    with pytest.raises(ConfigError, match="APP_LOGO_FILE"):
        load_settings(sandbox_env(APP_LOGO_FILE=str(tmp_path)))


@pytest.mark.parametrize("name", ["", "   ", "x" * 61, "line\nbreak"])
def test_an_unusable_app_name_stops_the_start(name):
    with pytest.raises(ConfigError, match="APP_NAME"):
        load_settings(sandbox_env(APP_NAME=name))


async def test_the_pages_show_the_name_and_logo_and_serve_it(make_client, tmp_path):
    logo = tmp_path / "logo.png"
    logo.write_bytes(png(2, 2))
    client = await make_client(sandbox=True, app_name="Acme <Shop>", app_logo_file=str(logo))
    for path, title, heading in (
        (
            "/wechat/callback",
            "Signing in to Acme &lt;Shop&gt;",
            "Signing you in to Acme &lt;Shop&gt;",
        ),
        (
            "/demo/qr-login",
            "Scan to sign in to Acme &lt;Shop&gt;",
            "Scan with WeChat to sign in to Acme &lt;Shop&gt;",
        ),
    ):
        page = await (await client.get(path)).text()
        assert f"<title>{title}</title>" in page
        assert heading in page
        assert '<span class="brand-name" id="brand-name">Acme &lt;Shop&gt;</span>' in page
        found = re.search(r'<img class="brand-logo" id="brand-logo" src="([^"]+)"', page)
        assert found, page
        src = found.group(1)
        assert re.fullmatch(r"/static/branding/logo\?v=[0-9a-f]{16}", src)
        assert f'<link rel="icon" href="{src}" type="image/png">' in page  # the logo is the icon

    served = await client.get(src)
    assert served.status == 200
    assert served.content_type == "image/png"
    assert await served.read() == logo.read_bytes()
    assert served.headers["Cache-Control"] == "public, max-age=86400"
    assert "sandbox" in served.headers["Content-Security-Policy"]
    etag = served.headers["ETag"]
    again = await client.get("/static/branding/logo", headers={"If-None-Match": etag})
    assert again.status == 304


async def test_an_svg_logo_is_served_as_svg_that_cannot_run_script(make_client, tmp_path):
    logo = tmp_path / "logo.svg"
    logo.write_bytes(SVG)
    client = await make_client(app_logo_file=str(logo))
    served = await client.get("/static/branding/logo")
    assert served.content_type == "image/svg+xml"
    csp = served.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp
    assert served.headers["X-Content-Type-Options"] == "nosniff"


async def test_without_a_logo_the_pages_use_the_shipped_icon(client):
    page = await (await client.get("/wechat/callback")).text()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    assert 'id="brand-logo"' not in page
    assert '<span class="brand-name" id="brand-name">wechat-oa-auth</span>' in page
    assert "<title>Signing in to wechat-oa-auth</title>" in page
    icon = await client.get("/static/favicon.svg")
    assert icon.status == 200
    assert icon.content_type == "image/svg+xml"
    assert image_type(await icon.read()) == "image/svg+xml"
    missing = await client.get("/static/branding/logo")
    assert missing.status == 404
    assert (await missing.json())["name"] == "NOT_FOUND"
