"""Pushes to the account's server (§10, §11 of ../shared/wechat-api.md), as WeChat sends them.

SandboxWeChat decides what happened (a scan, a follow, an unfollow, a text or any other message,
a menu event, nested ones included), which account it is for and which fields the push has; this
module signs, encrypts and POSTs it to that account's `message_url` with its token, EncodingAESKey
and appid, retries when no reply comes (spaced as WeChat spaces them, see
push()), judges the reply and records the push on the state. The HTTP session belongs to the
sandbox app (push_session_ctx, PUSH_SESSION_KEY).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from service.sandbox.records import PushRecord
from service.sandbox.state import SANDBOX_KEY, OutgoingPush, SandboxAccount, SandboxWeChat
from service.wechat.crypto import MessageCrypto, MessageCryptoError
from service.wechat.signature import wechat_signature
from service.wechat.xml import MessageXmlError, build_message, parse_message

# Emulator choice (§10 [AMBIGUOUS] "three times in total"): the first attempt and up to 3
# retries when no reply comes.
PUSH_ATTEMPTS = 4

PUSH_SESSION_KEY = web.AppKey("sandbox_push_session", aiohttp.ClientSession)


async def push_session_ctx(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(
        headers={"User-Agent": "Mozilla/4.0"},  # what WeChat's pushes are seen to send
        raise_for_status=False,
    ) as session:
        app[PUSH_SESSION_KEY] = session
        yield


def nonce() -> str:
    """WeChat's nonces are decimal numbers (e.g. 1514711492 in §10's test vector)."""
    return str(1_000_000_000 + secrets.randbelow(9_000_000_000))


def push_request(
    wechat: SandboxWeChat, fields: dict[str, Any], account: SandboxAccount | None = None
) -> tuple[URL, str, MessageCrypto | None]:
    """The URL (message_url + signature query) and body of a push to an account (default the
    first), per its message mode."""
    target = account or wechat.account()
    plain = build_message(fields)
    timestamp, once = str(int(wechat.clock.now())), nonce()
    query = {
        "signature": wechat_signature(target.token, timestamp, once),
        "timestamp": timestamp,
        "nonce": once,
        "openid": str(fields["FromUserName"]),  # observed in real push URLs (§10)
    }
    if target.message_mode == "plain":
        return URL(target.message_url).update_query(query), plain, None
    crypto = MessageCrypto(target.token, target.aes_key, target.appid)
    encrypted = crypto.encrypt(plain)
    query |= {"encrypt_type": "aes", "msg_signature": crypto.signature(timestamp, once, encrypted)}
    if target.message_mode == "compatible":
        # §11: compatible mode carries the plaintext fields and the ciphertext.
        body = build_message({**fields, "Encrypt": encrypted})
    else:
        body = build_message({"ToUserName": target.original_id, "Encrypt": encrypted})
    return URL(target.message_url).update_query(query), body, crypto


def judge_reply(
    mode: str, crypto: MessageCrypto | None, raw: bytes
) -> tuple[bool, dict[str, Any] | None, str]:
    """Whether WeChat takes this reply (§10, §11): (accepted, its fields, why not).

    `success` (surrounding whitespace allowed) and a zero-byte body acknowledge in every mode
    (emulator choice: a plain success is accepted in safe mode too). Otherwise it must be
    well-formed message XML; in safe mode an encrypted one (<Encrypt> whose MsgSignature
    checks out over TimeStamp and Nonce, and which decrypts to XML); in compatible mode
    either.
    """
    if not raw:
        return True, None, ""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return False, None, "the reply is not UTF-8"
    if text.strip() == "success":
        return True, None, ""
    try:
        fields = parse_message(text)
    except MessageXmlError as exc:
        # §10: what WeChat can't read (JSON, say) makes the user see "该公众号暂时无法提供服务".
        return False, None, f"the reply is not success, empty or message XML ({exc})"
    if crypto is None or "Encrypt" not in fields:
        if mode == "safe":
            return False, fields, "safe mode: the reply must be encrypted (or a plain success)"
        return True, fields, ""
    encrypted, signature = fields["Encrypt"], fields.get("MsgSignature", "")
    timestamp, once = fields.get("TimeStamp", ""), fields.get("Nonce", "")
    if not all(isinstance(v, str) for v in (encrypted, signature, timestamp, once)):
        return False, fields, "the encrypted reply's elements must be text"
    if not crypto.check_signature(signature, timestamp, once, encrypted):
        return False, fields, "the encrypted reply's MsgSignature does not match"
    try:
        return True, parse_message(crypto.decrypt(encrypted)), ""
    except (MessageCryptoError, MessageXmlError) as exc:
        return False, fields, f"the encrypted reply does not decrypt to message XML ({exc})"


async def push(
    session: aiohttp.ClientSession,
    wechat: SandboxWeChat,
    fields: dict[str, Any],
    account: SandboxAccount | None = None,
) -> PushRecord:
    """POST one push to an account's message_url (default the first account's) as WeChat
    does, and record how it went.

    Each attempt waits push_timeout for a reply; a timeout, a refused connection or an HTTP
    status of 500 or more counts as no reply and the same request goes again, up to
    PUSH_ATTEMPTS in all. Spacing: §10 documents only the timeout case ("微信服务器在五秒内收
    不到响应会断掉连接，并且重新发起请求，总共重试三次"): WeChat drops the connection and asks
    again, so after a timeout the retry goes at once, the 5 s wait being the spacing. How soon a
    5xx or a refused connection is retried is documented nowhere (neither the official pages
    nor the SDKs' issue trackers say; the only related note is the 2014 alarm rules' "MarkFail:
    after repeated failures pushes pause for a minute"). Emulator choice: such a retry waits
    push_retry_delay, by default push_timeout, so attempts come at WeChat's 5 s cadence
    whichever way they fail. The pause goes through wechat.sleep, which tests replace.

    Emulator choice (§10 [UNCONFIRMED] whether a retry reuses the first attempt's timestamp
    and nonce): every attempt is byte-for-byte the same, query string included (same
    timestamp, nonce and signatures, same CreateTime and MsgId), so the server's replay check
    knows it for a retry and its de-duplication (MsgId, or FromUserName+CreateTime) sees the
    same push. Any other reply ends the push: delivered when judge_reply accepts it, not
    delivered (and not retried) otherwise.
    """
    config = wechat.config  # push_timeout and push_retry_delay: WeChat's, every account's
    target = account or wechat.account()
    started = wechat.clock.now()
    url, body, crypto = push_request(wechat, fields, target)
    timeout = aiohttp.ClientTimeout(total=config.push_timeout)
    status: int | None = None
    reply, error = b"", ""
    delivered, reply_fields = False, None
    retry_delay = (
        config.push_timeout if config.push_retry_delay is None else config.push_retry_delay
    )
    attempts, pause = 0, 0.0
    while attempts < PUSH_ATTEMPTS:
        if attempts and pause > 0:
            await wechat.sleep(pause)
        attempts += 1
        try:
            async with session.post(
                url,
                data=body.encode(),
                headers={"Content-Type": "text/xml"},
                timeout=timeout,
                allow_redirects=False,
            ) as resp:
                status = resp.status
                reply = await resp.read()
        except TimeoutError:
            status, reply, error = None, b"", f"no reply within {config.push_timeout:g} s"
            pause = 0.0  # the timeout was the wait: WeChat asks again at once
            continue
        except (aiohttp.ClientError, OSError) as exc:
            status, reply = None, b""
            error = f"could not reach message_url ({type(exc).__name__})"
            pause = retry_delay
            continue
        if status >= 500:
            error = f"HTTP {status}"
            pause = retry_delay
            continue
        if not 200 <= status < 300:
            error = f"HTTP {status}"
            break
        delivered, reply_fields, error = judge_reply(target.message_mode, crypto, reply)
        break
    record = PushRecord(
        at=started,
        mode=target.message_mode,
        fields=dict(fields),
        attempts=attempts,
        delivered=delivered,
        status=status,
        reply=reply.decode(errors="replace"),
        reply_fields=reply_fields,
        error=error,
        appid=target.appid,
    )
    wechat.record_push(record)
    return record


async def send(request: web.Request, outgoing: OutgoingPush) -> PushRecord:
    """Push what SandboxWeChat decided, to the account it is for."""
    wechat = request.config_dict[SANDBOX_KEY]
    session = request.config_dict[PUSH_SESSION_KEY]
    return await push(session, wechat, outgoing.fields, outgoing.account)


async def scan(
    request: web.Request,
    openid: str | None,
    ticket: str | None,
    url: str | None,
    appid: str | None = None,
) -> PushRecord:
    """The user `openid` scans a code (by ticket or url): follow the code's account if need
    be, push the event to it."""
    return await send(request, request.config_dict[SANDBOX_KEY].scan(openid, ticket, url, appid))


async def unfollow(
    request: web.Request, openid: str | None, appid: str | None = None
) -> PushRecord:
    """The user `openid` unfollows the account: push `unsubscribe`."""
    return await send(request, request.config_dict[SANDBOX_KEY].unsubscribe(openid, appid))


async def follow(request: web.Request, openid: str | None, appid: str | None = None) -> PushRecord:
    """The user `openid` follows the account without a code: push `subscribe` (no scene)."""
    return await send(request, request.config_dict[SANDBOX_KEY].subscribe(openid, appid))


async def person(
    request: web.Request,
    openid: str | None,
    msg_type: str | None,
    extra: dict[str, Any],
    appid: str | None = None,
) -> PushRecord:
    """The user `openid` sends an account a message or does something WeChat tells it about
    (SandboxWeChat.person_push): push it."""
    wechat = request.config_dict[SANDBOX_KEY]
    return await send(request, wechat.person_push(openid, msg_type, extra, appid))
