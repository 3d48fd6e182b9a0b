"""The pages' language: Chinese inside WeChat or where the browser prefers it, English otherwise;
on every page the service serves, for its script's messages too; every text in both languages."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from service.pipeline import i18n
from service.pipeline.i18n import CHINESE, ENGLISH, choose_language, translator
from service.resources import STATIC_DIR, TEMPLATES_DIR

WECHAT_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN"
)
DESKTOP_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"


@pytest.mark.parametrize(
    ("user_agent", "accept_language", "expected"),
    [
        # Inside WeChat: Chinese, whatever the system's Accept-Language says.
        (WECHAT_UA, "en-US,en;q=0.9", CHINESE),
        (WECHAT_UA.replace(" Language/zh_CN", ""), None, CHINESE),
        (WECHAT_UA.replace("zh_CN", "zh_TW"), "en", CHINESE),
        # ... unless WeChat itself is set to another language: then Accept-Language decides.
        (WECHAT_UA.replace("zh_CN", "en"), "en-US,en;q=0.9", ENGLISH),
        (WECHAT_UA.replace("zh_CN", "en"), "zh-CN,zh;q=0.9", CHINESE),
        # Outside WeChat: the browser's preference between the two the service has.
        (DESKTOP_UA, "zh-CN,zh;q=0.9,en;q=0.8", CHINESE),
        (DESKTOP_UA, "zh-TW", CHINESE),
        (DESKTOP_UA, "en-US,en;q=0.9,zh-CN;q=0.8", ENGLISH),
        (DESKTOP_UA, "en;q=0.5, zh;q=0.9", CHINESE),  # the highest q, not the first
        (DESKTOP_UA, "zh;q=0.5, en;q=0.9", ENGLISH),
        (DESKTOP_UA, "zh, en", CHINESE),  # equal q: the first named
        (DESKTOP_UA, "en, zh", ENGLISH),
        (DESKTOP_UA, "fr-FR, zh;q=0.8", CHINESE),  # French it has not: Chinese is preferred
        (DESKTOP_UA, "fr-FR, en;q=0.8, zh;q=0.5", ENGLISH),
        (DESKTOP_UA, "fr-FR", ENGLISH),
        (DESKTOP_UA, "*", ENGLISH),
        (DESKTOP_UA, "*;q=0.5, en;q=0.1", CHINESE),  # * stands for Chinese, preferred to en
        (DESKTOP_UA, "zh;q=0", ENGLISH),  # q=0: not acceptable
        (DESKTOP_UA, "zh;q=abc, en;q=0.1", ENGLISH),  # a malformed q counts as 0
        (DESKTOP_UA, "ZH-cn", CHINESE),
        (DESKTOP_UA, "", ENGLISH),
        (None, None, ENGLISH),
    ],
)
def test_the_language_is_chosen_from_wechat_and_accept_language(
    user_agent, accept_language, expected
):
    assert choose_language(user_agent, accept_language) == expected


def test_a_huge_accept_language_is_read_only_so_far():
    header = ", ".join(["fr"] * 100 + ["zh"])
    assert choose_language(None, header) == ENGLISH


PAGES = ["/wechat/callback", "/", "/demo/qr-login", "/demo/landing"]
# A text each page shows in each language.
WORDS = {
    "/wechat/callback": {"en": "Signing you in to", "zh-CN": "正在登录"},
    "/": {"en": "Sign in with WeChat", "zh-CN": "微信登录"},
    "/demo/qr-login": {"en": "Scan with WeChat to sign in", "zh-CN": "用微信扫码登录"},
    "/demo/landing": {"en": "The app received this JWT", "zh-CN": "应用在 URL 片段中收到了"},
}


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize(
    ("headers", "language"),
    [
        ({"Accept-Language": "en-US,en;q=0.9"}, "en"),
        ({}, "en"),
        ({"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}, "zh-CN"),
        ({"User-Agent": WECHAT_UA, "Accept-Language": "en-US"}, "zh-CN"),
    ],
    ids=["english", "no-preference", "chinese-browser", "inside-wechat"],
)
async def test_every_page_speaks_the_chosen_language_and_varies_on_it(
    sandbox_service, browser, path, headers, language
):
    async with browser.get(f"{sandbox_service}{path}", headers=headers) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        vary = {v.strip() for v in resp.headers.get("Vary", "").split(",")}
        assert {"Accept-Language", "User-Agent"} <= vary
        page = await resp.text()
    assert f'<html lang="{language}">' in page
    assert WORDS[path][language] in page
    other = "zh-CN" if language == "en" else "en"
    assert WORDS[path][other] not in page


class Scripts(HTMLParser):
    """The page's <script> elements: their attributes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._open = dict(attrs)
            self.found.append((self._open, ""))

    def handle_data(self, data):
        if self._open is not None:
            attrs, text = self.found[-1]
            self.found[-1] = (attrs, text + data)

    def handle_endtag(self, tag):
        if tag == "script":
            self._open = None


@pytest.mark.parametrize(
    ("path", "area"),
    [("/wechat/callback", "callback"), ("/demo/qr-login", "qr"), ("/demo/landing", "landing")],
)
async def test_a_pages_script_gets_its_texts_as_data_in_the_pages_language(
    sandbox_service, browser, path, area
):
    """No inline script (the CSP forbids it): the texts come as a JSON data block."""
    for headers, language in (({"Accept-Language": "zh-CN"}, CHINESE), ({}, ENGLISH)):
        async with browser.get(f"{sandbox_service}{path}", headers=headers) as resp:
            parser = Scripts()
            parser.feed(await resp.text())
        data = [text for attrs, text in parser.found if attrs.get("type") == "application/json"]
        code = [attrs for attrs, text in parser.found if attrs.get("type") != "application/json"]
        assert all(attrs.get("src", "").startswith("/static/") for attrs in code)
        assert all(text == "" for attrs, text in parser.found if "src" in attrs)
        (strings,) = data
        texts = json.loads(strings)
        assert texts == translator(language).strings(area)
        assert texts, area


def test_every_text_is_in_both_languages_with_the_same_placeholders():
    texts = i18n.catalog()
    assert set(texts) == {ENGLISH, CHINESE}
    assert texts[ENGLISH].keys() == texts[CHINESE].keys()
    for key, english in texts[ENGLISH].items():
        placeholders = set(re.findall(r"\{(\w+)\}", english))
        assert placeholders == set(re.findall(r"\{(\w+)\}", texts[CHINESE][key])), key
        assert english.strip() and texts[CHINESE][key].strip(), key


def test_every_key_the_templates_and_scripts_use_has_a_text():
    texts = i18n.catalog()[ENGLISH]
    used = set()
    for template in TEMPLATES_DIR.glob("*.html"):
        # Whole keys only: one built with ~ is the template's own business.
        used |= set(re.findall(r"""\bt\(\s*["']([\w.]+)["']\s*[,)]""", template.read_text()))
    # The scripts name keys within their area (callback.js: "used.title" is callback.used.title).
    for script, area in (
        ("callback.js", "callback"),
        ("qr-login.js", "qr"),
        ("landing.js", "landing"),
    ):
        source = (STATIC_DIR / script).read_text()
        used |= {f"{area}.{key}" for key in re.findall(r'\bt\("([\w.]+)"\s*[,)]', source)}
        # callback.js builds some: problem(what, label, ...) -> what.title, what.text, action.label
        for what, label in re.findall(r'problem\("(\w+)", (?:"(\w+)"|[\w ?:"]+)', source):
            used |= {f"{area}.{what}.title", f"{area}.{what}.text"}
            if label:
                used.add(f"{area}.action.{label}")
    assert used, "no key found"
    assert sorted(used - texts.keys()) == []


def test_trusted_markup_keys_escape_what_is_put_into_them():
    t = translator(ENGLISH)
    shown = t("demo.intro_html", appid="<script>x</script>")
    assert "<code>&lt;script&gt;x&lt;/script&gt;</code>" in shown
    assert t("callback.title", app="<b>") == "Signing in to <b>"  # plain: Jinja escapes it
    assert translator("fr").language == ENGLISH
    assert t("no.such.key") == "no.such.key"
