"""Branding of the pages: APP_NAME, and the APP_LOGO_FILE image with its checks.

The logo is read once, when the settings are loaded (service/config.py), and refused there if
it is missing, over MAX_LOGO_BYTES, or not a PNG, JPEG, WebP, ICO or SVG image by its bytes
(whatever its name says). The service serves it at LOGO_PATH, under /static/ as an asset, and
the callback and QR sign-in pages show it beside APP_NAME, and use it as their icon. Without a
logo the icon is the shipped static/favicon.svg.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_APP_NAME = "wechat-oa-auth"
MAX_APP_NAME_LENGTH = 60
MAX_LOGO_BYTES = 256 * 1024
LOGO_PATH = "/static/branding/logo"
FAVICON_PATH = "/static/favicon.svg"
FAVICON_TYPE = "image/svg+xml"
# An SVG logo opened by itself is a document that could run script: served with this, it
# cannot (inside <img> no SVG runs script anyway).
LOGO_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"

# What an SVG file may hold before its <svg> element: a byte-order mark, an XML declaration,
# comments, a doctype, white space.
_SVG_START = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*"
    rb"(?:<!DOCTYPE[^>]*>\s*)?(?:<!--.*?-->\s*)*<svg[\s/>]",
    re.DOTALL | re.IGNORECASE,
)


class LogoError(ValueError):
    """APP_LOGO_FILE cannot be used; the message says why."""


def image_type(content: bytes) -> str | None:
    """The Content-Type of a PNG, JPEG, WebP, ICO or SVG image, from its first bytes."""
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    if content[:4] == b"\x00\x00\x01\x00" and len(content) > 6 and content[4:6] != b"\x00\x00":
        return "image/x-icon"  # ICONDIR: reserved 0, type 1 (icon), at least one image
    if _SVG_START.match(content[:4096]):
        return "image/svg+xml"
    return None


@dataclass(frozen=True)
class Logo:
    content: bytes
    content_type: str

    @functools.cached_property
    def version(self) -> str:
        """Changes with the image: in its URL, so a new logo is never read from a cache."""
        return hashlib.sha256(self.content).hexdigest()[:16]

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


@functools.lru_cache(maxsize=8)
def load_logo(path: str) -> Logo:
    """The image at `path`, checked; LogoError if it cannot be the logo. Read once per path."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_LOGO_BYTES:
            raise LogoError(
                f"{path} is {size} bytes; a logo may have at most {MAX_LOGO_BYTES} "
                f"({MAX_LOGO_BYTES // 1024} KiB)"
            )
        content = file.read_bytes()
    except OSError as exc:
        raise LogoError(f"cannot read {path}: {exc.strerror or exc}") from None
    content_type = image_type(content)
    if content_type is None:
        raise LogoError(f"{path} is not a PNG, JPEG, WebP, ICO or SVG image")
    return Logo(content, content_type)


@dataclass(frozen=True)
class Branding:
    """What a page shows of the app: its name, its logo (if any) and its icon."""

    app_name: str = DEFAULT_APP_NAME
    logo: Logo | None = None

    @property
    def logo_url(self) -> str | None:
        return f"{LOGO_PATH}?v={self.logo.version}" if self.logo else None

    @property
    def icon_url(self) -> str:
        return self.logo_url or FAVICON_PATH

    @property
    def icon_type(self) -> str:
        return self.logo.content_type if self.logo else FAVICON_TYPE


@functools.lru_cache(maxsize=8)
def branding(app_name: str, logo_file: str) -> Branding:
    """APP_NAME and APP_LOGO_FILE as the pages show them (LogoError for a bad logo file)."""
    return Branding(app_name or DEFAULT_APP_NAME, load_logo(logo_file) if logo_file else None)


def check_app_name(app_name: str) -> str | None:
    """Why APP_NAME cannot be shown, or None."""
    if not app_name.strip() or len(app_name) > MAX_APP_NAME_LENGTH or not app_name.isprintable():
        return f"must be 1 to {MAX_APP_NAME_LENGTH} printable characters, got {app_name!r}"
    return None
