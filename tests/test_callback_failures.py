"""Every way the built-in callback page can fail, in a real headless Chromium, in English and in
Chinese: the page says what happened, offers the action that helps (and the action does it),
and shows the error's id as the reference, which the service's log line for it carries.

Chromium is driven over the DevTools protocol (a small client below, on aiohttp's WebSocket):
the tests click the page's button and watch what follows. Each test gets its own browser
context (no cookies shared), its language set the way a person's browser or WeChat sets it:
Accept-Language, or WeChat's User-Agent (MicroMessenger).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from flows import MONGODB_URI, listening_socket
from service import keys
from service.app import create_app
from service.config import load_settings
from service.logs import AccessLogger
from service.sandbox import SANDBOX_USERS, SNAPSHOT_USER

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

USER = SANDBOX_USERS[0]
WECHAT_UA = (
    "Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230901.001; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 "
    "MMWEBSDK/20231202 MMWEBID/2247 MicroMessenger/8.0.47.2560(0x28002F35) WeChat/arm64 "
    "Weixin NetType/WIFI Language/zh_CN ABI/arm64"
)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# -- Chromium over the DevTools protocol ----------------------------------------------------


class DevToolsError(Exception):
    pass


class DevTools:
    """Commands over one WebSocket to the browser; a page's commands name its session."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._ws:
            data = json.loads(message.data)
            future = self._pending.pop(data.get("id"), None)
            if future is not None and not future.done():
                future.set_result(data)

    async def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        command_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        command: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session is not None:
            command["sessionId"] = session
        await self._ws.send_str(json.dumps(command))
        answer = await asyncio.wait_for(future, 30)
        if "error" in answer:
            raise DevToolsError(f"{method}: {answer['error']}")
        return answer["result"]

    def close(self) -> None:
        self._reader.cancel()


@dataclass
class Tab:
    devtools: DevTools
    session: str

    async def goto(self, url: str) -> None:
        await self.devtools.call("Page.navigate", {"url": url}, self.session)

    async def eval(self, expression: str) -> Any:
        result = await self.devtools.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, self.session
        )
        if "exceptionDetails" in result:
            raise DevToolsError(result["exceptionDetails"].get("text", "exception"))
        return result["result"].get("value")

    async def wait_for(self, expression: str, within: float = 15.0) -> Any:
        """The expression's value once truthy (evaluated again while the page navigates)."""
        deadline = time.monotonic() + within
        while True:
            try:
                value = await self.eval(expression)
            except DevToolsError:
                value = None  # no document to evaluate in while navigating
            if value:
                return value
            if time.monotonic() > deadline:
                body = await self.eval("location.href + ' ' + document.body.innerText")
                raise AssertionError(f"timed out waiting for {expression!r}; page: {body}")
            await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def chromium(tmp_path_factory) -> Iterator[str]:
    """One headless Chromium for the module: its DevTools WebSocket URL."""
    profile = tmp_path_factory.mktemp("chromium")
    process = subprocess.Popen(  # noqa: S603
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        active = Path(profile, "DevToolsActivePort")
        deadline = time.monotonic() + 30
        while not (active.exists() and len(active.read_text().splitlines()) >= 2):
            assert process.poll() is None, "chromium exited"
            assert time.monotonic() < deadline, "chromium never opened its DevTools port"
            time.sleep(0.05)
        port, path = active.read_text().splitlines()[:2]
        yield f"ws://127.0.0.1:{port}{path}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass(frozen=True)
class Language:
    """How a person's browser asks for a language."""

    name: str  # what the page's <html lang> must say
    accept_language: str = ""
    user_agent: str = ""


ENGLISH = Language("en", accept_language="en-US,en;q=0.9")
CHINESE_BROWSER = Language("zh-CN", accept_language="zh-CN,zh;q=0.9,en;q=0.8")
INSIDE_WECHAT = Language("zh-CN", accept_language="en-US,en;q=0.9", user_agent=WECHAT_UA)
# Chinese both ways: inside WeChat (whatever Accept-Language says), and a browser preferring it.
LANGUAGES = [
    pytest.param(ENGLISH, id="en"),
    pytest.param(INSIDE_WECHAT, id="zh-CN-wechat"),
    pytest.param(CHINESE_BROWSER, id="zh-CN-accept-language"),
]


@pytest.fixture
async def tab(chromium: str) -> AsyncIterator[Any]:
    """Opens a tab in a fresh browser context (its own cookies) speaking `language`."""
    async with aiohttp.ClientSession() as session, session.ws_connect(chromium) as ws:
        devtools = DevTools(ws)
        contexts: list[str] = []

        async def open_tab(language: Language, *, sandbox_user: str | None = None) -> Tab:
            context = (await devtools.call("Target.createBrowserContext"))["browserContextId"]
            contexts.append(context)
            target = await devtools.call(
                "Target.createTarget", {"url": "about:blank", "browserContextId": context}
            )
            attached = await devtools.call(
                "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
            )
            page = Tab(devtools, attached["sessionId"])
            user_agent = language.user_agent or (await devtools.call("Browser.getVersion"))[
                "userAgent"
            ].replace("HeadlessChrome", "Chrome")
            await devtools.call(
                "Emulation.setUserAgentOverride",
                {"userAgent": user_agent, "acceptLanguage": language.accept_language},
                page.session,
            )
            if sandbox_user:
                # As if the person had picked a sandbox user once: WeChat knows who they are.
                await devtools.call(
                    "Storage.setCookies",
                    {
                        "browserContextId": context,
                        "cookies": [
                            {
                                "name": "sandbox_openid",
                                "value": sandbox_user,
                                "domain": "localhost",
                                "path": "/",
                            }
                        ],
                    },
                )
            return page

        try:
            yield open_tab
        finally:
            for context in contexts:
                with contextlib.suppress(Exception):
                    await devtools.call(
                        "Target.disposeBrowserContext", {"browserContextId": context}
                    )
            devtools.close()


# -- the service ----------------------------------------------------------------------------


@pytest.fixture
async def make_sandbox(mongodb_name) -> AsyncIterator[Any]:
    """The service as `make run` starts it (see conftest.sandbox_server), with environment
    overrides; returns (base URL on localhost, the server)."""
    servers: list[tuple[TestServer, Any]] = []

    async def make(**env: str) -> tuple[str, TestServer]:
        listening = listening_socket()
        environment = {
            "SANDBOX": "1",
            "PORT": str(listening.getsockname()[1]),
            "HOST": "127.0.0.1",
            "MONGODB_DB": mongodb_name,
            "TOKEN_UPKEEP": "0",
            **env,
        }
        if MONGODB_URI:
            environment["MONGODB_URI"] = MONGODB_URI
        server = TestServer(
            create_app(load_settings(environment)),
            socket_factory=lambda host, port, family: listening,
        )
        await server.start_server(access_log_class=AccessLogger)
        servers.append((server, listening))
        return f"http://localhost:{server.port}", server

    yield make
    for server, listening in servers:
        await server.close()
        listening.close()


async def callback_url(
    http: aiohttp.ClientSession,
    base: str,
    *,
    openid: str = USER.openid,
    action: str = "allow",
    scope: str = "snsapi_base",
) -> str:
    """A sign-in for the built-in callback page (/wechat/authorize: not browser-bound), the
    person at WeChat: the URL WeChat sends their browser back to."""
    started = await http.get(
        f"{base}/wechat/authorize",
        params={
            "redirectUri": f"{base}/demo/landing",
            "callback": f"{base}/wechat/callback",
            "scope": scope,
        },
    )
    wechat = (await started.json())["details"]["fieldValue"].split("#")[0]
    at_wechat = await http.get(
        f"{wechat}&sandbox_openid={openid}&sandbox_action={action}", allow_redirects=False
    )
    assert at_wechat.status == 302, await at_wechat.text()
    return at_wechat.headers["Location"]


def state_of(url: str) -> str:
    found = re.search(r"[?&]state=([A-Za-z0-9]+)", unquote(unquote(url)))
    assert found, url
    return found.group(1)


# -- what the page shows --------------------------------------------------------------------

SHOWN = """(() => {
  const problem = document.getElementById("problem");
  if (!problem || problem.classList.contains("hidden")) return null;
  const button = document.getElementById("action");
  const ref = document.getElementById("problem-ref");
  return {
    lang: document.documentElement.lang,
    problem: problem.getAttribute("data-problem"),
    text: problem.innerText,
    button: button.classList.contains("hidden") ? null : {
      label: button.textContent, action: button.dataset.action, disabled: button.disabled,
    },
    reference: ref.classList.contains("hidden") ? null :
      document.getElementById("problem-ref-id").textContent,
  };
})()"""


async def failure_shown(page: Tab, url: str) -> dict[str, Any]:
    await page.goto(url)
    return await page.wait_for(SHOWN)


# The words each language must use: (what happened, the button's label or None).
Words = dict[str, tuple[tuple[str, ...], str | None]]


def assert_says(shown: dict[str, Any], language: Language, words: Words) -> None:
    phrases, label = words[language.name]
    assert shown["lang"] == language.name
    for phrase in phrases:
        assert phrase in shown["text"], (phrase, shown)
    if label is None:
        assert shown["button"] is None, shown
    else:
        assert shown["button"] and shown["button"]["label"] == label, shown


def assert_reference_logged(shown: dict[str, Any], caplog, name: str) -> None:
    """The reference on the page is the error's id: the service's log line for it names it."""
    reference = shown["reference"]
    assert reference and UUID.fullmatch(reference), shown
    lines = [r.getMessage() for r in caplog.records if r.name == "service.errors"]
    assert any(f" {name} id={reference} " in line for line in lines), (reference, lines)


async def click(page: Tab) -> None:
    await page.eval('document.getElementById("action").click()')


async def lands_signed_in(page: Tab, openid: str = USER.openid) -> None:
    """The same sign-in finished: the landing page shows the JWT's claims."""
    claims = await page.wait_for(
        'location.pathname === "/demo/landing" && document.getElementById("claims").innerText'
    )
    assert openid in claims


async def starts_again_at_wechat(page: Tab, old_state: str) -> str:
    """A new authorization for the same app: the browser is at WeChat with a new state."""
    url = await page.wait_for(
        'location.pathname.startsWith("/sandbox/") && location.href.includes("state") '
        "&& location.href"
    )
    new_state = state_of(url)
    assert new_state != old_state
    return new_state


@pytest.fixture(autouse=True)
def error_lines(caplog):
    caplog.set_level(logging.INFO, logger="service.errors")


# -- the failures ---------------------------------------------------------------------------

START_AGAIN = {"en": "Start again", "zh-CN": "重新登录"}
TRY_AGAIN = {"en": "Try again", "zh-CN": "重试"}


@pytest.mark.parametrize("language", LANGUAGES)
async def test_an_expired_link_says_expired_and_starts_again(
    language, make_sandbox, browser, tab, caplog
):
    base, server = await make_sandbox()
    url = await callback_url(browser, base)
    # The same sign-in, its state issued STATE_TTL and a second ago: expired, still in its
    # retention (so the page can say "expired" and start again for the same app).
    signer = server.app[keys.SIGN_INS].default.states
    token = signer.read(state_of(url))
    expired = signer.issue(
        issued_at=int(time.time()) - 601,
        context_id=token.context_id,
        binding_kind=token.binding_kind,
        binding=token.binding,
    )
    url = url.replace(state_of(url), expired)
    page = await tab(language, sandbox_user=USER.openid)
    shown = await failure_shown(page, url)
    assert_says(
        shown,
        language,
        {
            "en": (("This sign-in link has expired", "only for a few minutes"), "Start again"),
            "zh-CN": (("链接已过期", "只在几分钟内有效"), "重新登录"),
        },
    )
    assert "used" not in shown["text"] and "已使用" not in shown["text"]
    assert_reference_logged(shown, caplog, "INVALID_STATE")
    await click(page)
    await lands_signed_in(page)  # a new authorization for the same app, finished


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_used_link_says_used_not_expired_and_starts_again(
    language, make_sandbox, browser, tab, caplog
):
    base, _server = await make_sandbox()
    url = await callback_url(browser, base)
    query = url.split("?", 1)[1]
    assert (await browser.get(f"{base}/wechat/jwt?{query}")).status == 200  # used a moment ago
    page = await tab(language)
    shown = await failure_shown(page, url)
    assert_says(
        shown,
        language,
        {
            "en": (("This sign-in link was already used", "works once"), "Start again"),
            "zh-CN": (("该链接已使用过", "只能使用一次"), "重新登录"),
        },
    )
    assert "expired" not in shown["text"] and "过期" not in shown["text"]
    assert_reference_logged(shown, caplog, "INVALID_STATE")
    await click(page)
    await starts_again_at_wechat(page, state_of(url))


@pytest.mark.parametrize("language", LANGUAGES)
async def test_an_unknown_link_says_so_and_sends_back_to_the_app(
    language, make_sandbox, tab, caplog
):
    base, _server = await make_sandbox()
    page = await tab(language)
    shown = await failure_shown(page, f"{base}/wechat/callback?code=abc&state=NoSuchState123")
    assert_says(
        shown,
        language,
        {
            "en": (("This sign-in link is not recognised", "Go back to the app"), None),
            "zh-CN": (("无法识别该登录链接", "请返回应用重新登录"), None),
        },
    )
    assert_reference_logged(shown, caplog, "INVALID_STATE")


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_denial_at_wechat_offers_to_authorize_again(language, make_sandbox, browser, tab):
    base, _server = await make_sandbox()
    url = await callback_url(browser, base, action="deny", scope="snsapi_userinfo")
    assert "code=" not in url  # WeChat sends only the state
    page = await tab(language, sandbox_user=USER.openid)
    shown = await failure_shown(page, url)
    assert_says(
        shown,
        language,
        {
            "en": (("You declined",), "Authorize again"),
            "zh-CN": (("你拒绝了授权",), "重新授权"),
        },
    )
    assert shown["reference"] is None  # nothing failed at the service
    await click(page)
    # WeChat's consent page again, for a new state of the same app.
    await starts_again_at_wechat(page, state_of(url))


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(
    ("fault", "name", "words"),
    [
        (
            {"kind": "busy"},
            "WECHAT_UNAVAILABLE",
            {"en": ("WeChat is busy", "try again"), "zh-CN": ("微信暂时繁忙，请重试",)},
        ),
        (
            {"kind": "http_error", "status": 503},
            "WECHAT_UNAVAILABLE",
            {"en": ("WeChat is busy", "try again"), "zh-CN": ("微信暂时繁忙，请重试",)},
        ),
        (
            {"kind": "slow", "delay": 3},
            "WECHAT_TIMEOUT",
            {"en": ("WeChat did not answer in time",), "zh-CN": ("微信响应超时，请重试",)},
        ),
        (
            {"kind": "errcode", "errcode": 40164},
            "WECHAT_ERROR",
            {"en": ("WeChat refused the sign-in",), "zh-CN": ("微信拒绝了本次登录",)},
        ),
    ],
    ids=["busy", "unavailable", "timeout", "refused"],
)
async def test_wechat_failing_offers_the_same_request_again(
    language, fault, name, words, make_sandbox, browser, tab, caplog
):
    base, _server = await make_sandbox(WECHAT_TIMEOUT="1")
    url = await callback_url(browser, base)
    once = {**fault, "paths": ["sns/oauth2/access_token"], "count": 1}
    assert (await browser.post(f"{base}/sandbox/_sandbox/faults", json=once)).status == 201
    page = await tab(language)
    shown = await failure_shown(page, url)
    assert_says(shown, language, {lang: (words[lang], TRY_AGAIN[lang]) for lang in words})
    assert shown["button"]["action"] == "retry"
    assert_reference_logged(shown, caplog, name)
    await click(page)
    await lands_signed_in(page)  # the same code and state, kept while WeChat failed


@pytest.mark.parametrize("language", LANGUAGES)
async def test_rate_limited_waits_retry_after_then_tries_the_same_request(
    language, make_sandbox, browser, tab, caplog
):
    # One request to /wechat/jwt every 3 s, none saved up; authorizing is not limited here.
    base, _server = await make_sandbox(
        RATE_LIMIT_JWT="20", RATE_LIMIT_BURST="1", RATE_LIMIT_AUTHORIZE="0"
    )
    url = await callback_url(browser, base)
    assert (await browser.get(f"{base}/wechat/jwt")).status == 400  # spends this minute's turn
    page = await tab(language)
    shown = await failure_shown(page, url)
    seconds = re.search(r"\d+", shown["text"].split("\n", 1)[1])
    assert seconds and 1 <= int(seconds.group()) <= 3, shown
    n = seconds.group()
    assert_says(
        shown,
        language,
        {
            "en": (("Too many attempts", f"Please wait {n} s"), f"Try again in {n} s"),
            "zh-CN": (("操作太频繁", f"请在 {n} 秒后重试"), f"{n} 秒后可重试"),
        },
    )
    assert shown["button"]["disabled"] and shown["button"]["action"] == "wait"
    assert_reference_logged(shown, caplog, "RATE_LIMITED")
    ready = await page.wait_for(
        '!document.getElementById("action").disabled && document.getElementById("action")'
        ".textContent",
        within=10,
    )
    assert ready == TRY_AGAIN[language.name]
    await click(page)
    await lands_signed_in(page)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_snapshot_page_user_is_told_to_tap_use_full_service(
    language, make_sandbox, browser, tab, caplog
):
    base, _server = await make_sandbox()
    url = await callback_url(browser, base, openid=SNAPSHOT_USER.openid, scope="snsapi_userinfo")
    page = await tab(language)
    shown = await failure_shown(page, url)
    assert_says(
        shown,
        language,
        {
            "en": (("使用完整服务", "Use full service", "snapshot"), None),
            "zh-CN": (("请点击屏幕下方的「使用完整服务」", "快照页"), None),
        },
    )
    assert_reference_logged(shown, caplog, "SNAPSHOT_USER")


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_link_from_another_browser_starts_again_bound_to_this_one(
    language, make_sandbox, browser, tab, caplog
):
    base, server = await make_sandbox()
    login = await browser.get(
        f"{base}/wechat/login",
        params={"redirectUri": f"{base}/demo/landing", "scope": "snsapi_base"},
        allow_redirects=False,
    )
    wechat = login.headers["Location"].split("#")[0]
    at_wechat = await browser.get(f"{wechat}&sandbox_openid={USER.openid}", allow_redirects=False)
    url = at_wechat.headers["Location"]  # someone else's callback link
    page = await tab(language, sandbox_user=USER.openid)
    shown = await failure_shown(page, url)
    assert_says(
        shown,
        language,
        {
            "en": (("This sign-in was started elsewhere",), "Start again"),
            "zh-CN": (("该登录是在其他浏览器中发起的",), "重新登录"),
        },
    )
    assert_reference_logged(shown, caplog, "STATE_NOT_BOUND")
    await click(page)
    await lands_signed_in(page)  # a new sign-in, bound to this browser, finished here
    # One state used: the new sign-in's, not the other browser's.
    store = server.app[keys.STORE]
    used = [doc async for doc in store.states.find({})]
    theirs = server.app[keys.SIGN_INS].default.states.read(state_of(url))
    assert len(used) == 1 and used[0]["_id"] != theirs.nonce.hex()


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_damaged_link_says_so(language, make_sandbox, browser, tab):
    base, _server = await make_sandbox()
    page = await tab(language, sandbox_user=USER.openid)
    words: Words = {
        "en": (("This link is damaged",), None),
        "zh-CN": (("链接已损坏",), None),
    }
    broken_state = await failure_shown(page, f"{base}/wechat/callback?code=abc&state=%")
    assert_says(broken_state, language, words)
    assert broken_state["reference"] is None
    # The code damaged, the state intact: the same app can be asked again.
    url = await callback_url(browser, base)
    damaged = re.sub(r"code=[^&]+", "code=%E0%A4%A", url)
    shown = await failure_shown(page, damaged)
    label = START_AGAIN[language.name]
    assert_says(shown, language, {k: (v[0], label) for k, v in words.items()})
    await click(page)
    await lands_signed_in(page)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_code_wechat_refuses_starts_again(language, make_sandbox, browser, tab, caplog):
    base, _server = await make_sandbox()
    url = await callback_url(browser, base)
    forged = re.sub(r"code=[^&]+", "code=" + "0" * 32, url)
    page = await tab(language, sandbox_user=USER.openid)
    shown = await failure_shown(page, forged)
    assert_says(
        shown,
        language,
        {
            "en": (("WeChat's authorization is no longer valid",), "Start again"),
            "zh-CN": (("微信授权已失效",), "重新登录"),
        },
    )
    assert_reference_logged(shown, caplog, "INVALID_CODE")
    await click(page)
    await lands_signed_in(page)
