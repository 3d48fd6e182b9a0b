"""The languages of the service's pages: Chinese (zh-CN) inside WeChat or where the browser
prefers it, English otherwise.

How the language is chosen (`choose_language`):

1. Inside WeChat (the User-Agent contains `MicroMessenger`): Chinese, unless WeChat's own
   language, which its User-Agent names as `Language/<xx>`, is not Chinese; then as in 2.
2. Accept-Language: Chinese when a `zh` range (`zh`, `zh-CN`, `zh-TW`, … : the one Chinese the
   service has) has a higher q than every `en` range, or the same q and comes first. A
   language the service lacks (`fr`) does not count; `*` stands for both. Otherwise English.

For a page of your own: render it with `service.pipeline.pages.page()`, which chooses the
language and gives the template `lang` (for `<html lang>`) and `t`:

    {{ t("area.key") }}            the text of key "key" in templates/i18n/area.json
    {{ t("area.key", n=3) }}       with its {n} filled in (autoescaped like any value)
    {{ t.strings("area")|tojson }} every text of the area, for the page's script (a
                                   <script type="application/json"> block: see base.html)

Each templates/i18n/<area>.json holds `{"en": {...}, "zh-CN": {...}}`, the same keys in both
(tests/test_pages_i18n.py checks it). A key ending in `_html` is trusted markup from that file:
it is not escaped, the values put into it are. A missing text falls back to English, then to
the key itself, so a page never fails for want of a translation.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from markupsafe import Markup, escape

from service import resources

ENGLISH = "en"
CHINESE = "zh-CN"
LANGUAGES = (ENGLISH, CHINESE)
CATALOG_DIR = resources.TEMPLATES_DIR / "i18n"
# Pages whose words depend on these request headers say so to caches.
VARY = "Accept-Language, User-Agent"

_WECHAT_LANGUAGE = re.compile(r"\bLanguage/([A-Za-z]{1,8})")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
# A browser sends a handful of ranges; a header with hundreds is read no further.
_MAX_RANGES = 32


def choose_language(user_agent: str | None, accept_language: str | None) -> str:
    """`zh-CN` or `en` for a request with these headers (the rules are the module's)."""
    if user_agent and "MicroMessenger" in user_agent:
        named = _WECHAT_LANGUAGE.search(user_agent)
        if named is None or named.group(1).lower().startswith("zh"):
            return CHINESE
    return _from_accept_language(accept_language or "")


def _from_accept_language(header: str) -> str:
    # For each language the service has: the best q given to it, and where it was first named.
    best: dict[str, tuple[float, int]] = {}
    wildcard: tuple[float, int] | None = None
    for position, item in enumerate(header.split(",")[:_MAX_RANGES]):
        tag, _, params = item.strip().partition(";")
        q = _quality(params)
        primary = tag.strip().split("-")[0].lower()
        if primary == "*":
            wildcard = wildcard or (q, position)
        elif primary in ("zh", "en"):
            previous = best.get(primary)
            if previous is None or q > previous[0]:
                best[primary] = (q, position if previous is None else previous[1])
    # `*` stands for a language not named; one named nowhere is not acceptable.
    zh = best.get("zh") or wildcard or (0.0, _MAX_RANGES)
    en = best.get("en") or wildcard or (0.0, _MAX_RANGES)
    if zh[0] > 0 and (zh[0] > en[0] or (zh[0] == en[0] and zh[1] < en[1])):
        return CHINESE
    return ENGLISH


def _quality(params: str) -> float:
    """q=0..1 from a range's parameters; 1 when absent, 0 when malformed (not acceptable)."""
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def language_of(request: web.BaseRequest) -> str:
    """The language of the page answering `request`."""
    return choose_language(
        request.headers.get("User-Agent"), request.headers.get("Accept-Language")
    )


@functools.cache
def catalog(directory: Path = CATALOG_DIR) -> Mapping[str, Mapping[str, str]]:
    """Every text, by language then "area.key", from directory/<area>.json (read once)."""
    texts: dict[str, dict[str, str]] = {language: {} for language in LANGUAGES}
    for path in sorted(directory.glob("*.json")):
        area = json.loads(path.read_text(encoding="utf-8"))
        for language, entries in area.items():
            for key, text in entries.items():
                texts.setdefault(language, {})[f"{path.stem}.{key}"] = text
    return texts


@dataclass(frozen=True)
class Translator:
    """A page's texts in one language: call it with a key (and values for its {names})."""

    language: str

    def text(self, key: str) -> str:
        texts = catalog()
        found = texts.get(self.language, {}).get(key)
        return found if found is not None else texts[ENGLISH].get(key, key)

    def __call__(self, key: str, **values: object) -> str:
        text = self.text(key)
        if key.endswith("_html"):
            # Trusted markup from the catalog; what goes into it is escaped.
            return Markup(  # noqa: S704 - the catalog's own text, its values escaped
                _PLACEHOLDER.sub(lambda m: str(escape(values.get(m.group(1), m.group(0)))), text)
            )
        return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), text)

    def strings(self, *areas: str) -> dict[str, str]:
        """The areas' texts as a page's script needs them: "area.key" to text, {names} kept."""
        prefixes = tuple(f"{area}." for area in areas)
        return {key: self.text(key) for key in catalog()[ENGLISH] if key.startswith(prefixes)}


def translator(language: str) -> Translator:
    return Translator(language if language in LANGUAGES else ENGLISH)
