"""Sandbox mode's JS-SDK demo in a real headless Chromium: the page asks /wechat/jssdk/config for
its own URL (with a fragment, which is dropped) and runs wx.config on the emulator's jweixin.js
stand-in, which has the emulator check the signature as the real JS-SDK has WeChat check it."""

from __future__ import annotations

import pytest
from test_browser import CHROMIUM, dump_dom

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


async def test_the_demo_page_shows_that_wx_config_succeeded(sandbox_service, tmp_path):
    dom = await dump_dom(f"{sandbox_service}/demo/jssdk?from=share#section-2", tmp_path)
    assert 'data-result="ok"' in dom, dom
    assert "config ok" in dom
    assert "invalid signature" not in dom


async def test_the_demo_works_at_127_0_0_1_too(sandbox_server, tmp_path):
    """Sandbox mode without PUBLIC_URL allows the origin the page is opened at (origins.py)."""
    base = str(sandbox_server.make_url("")).rstrip("/")
    assert base.startswith("http://127.0.0.1:")
    dom = await dump_dom(f"{base}/demo/jssdk", tmp_path)
    assert 'data-result="ok"' in dom, dom
