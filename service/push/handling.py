"""WeChat's pushes to POST /wechat/message: verified, decrypted, de-duplicated, acted on.

WeChat waits 5 seconds for the reply and retries the same push when none comes (§10 of
wechat-api.md), so the reply goes out after quick store writes only; calls to WeChat (the
follower's record for a QR sign-in) run afterwards, and retried pushes are recognised and
acknowledged without being processed twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.clock import Clock
from service.config import Settings
from service.errors import BadRequest, Forbidden, InvalidSignature, ServiceError
from service.pipeline.metrics import Metrics
from service.push.background import Background
from service.qr.login import QrSignIn, is_login_scene
from service.store.queries import Store
from service.wechat.crypto import MessageCrypto, MessageCryptoError
from service.wechat.signature import signature_matches, wechat_signature
from service.wechat.xml import MessageXmlError, parse_message, text_reply

log = logging.getLogger(__name__)

DEDUP_RETENTION = 3600  # WeChat's retries come within about 15 s; an hour is ample
# A delivery still unfinished after this long was abandoned (its instance stopped mid-way): a
# retry then processes it. WeChat gives up on an answer after 5 s and retries within ~15 s.
ABANDONED_AFTER = 8.0
# A retry that finds the first delivery still being processed waits this long for its outcome,
# inside WeChat's 5 s (§10), then answers 503 so that WeChat asks again.
IN_PROGRESS_WAIT = 3.0
IN_PROGRESS_POLL = 0.05
# Who sent a push and when: de-duplication and the reply need them as text. Other fields may
# nest in pushes WeChat adds later: a nested MsgType or Event is acknowledged without being
# acted on, a nested EventKey reads as no key (text_of).
IDENTITY_FIELDS = ("ToUserName", "FromUserName", "CreateTime", "MsgId")
MAX_LOGGED_KIND = 80  # WeChat's event names are short; a signed sender's need not be
MAX_CREATE_TIME = 2**32 - 1  # WeChat's CreateTime is a 32-bit count of seconds
QR_SCENE_PREFIX = "qrscene_"


class InvalidMessage(BadRequest):
    name = "INVALID_MESSAGE"


class StalePush(Forbidden):
    name = "STALE_PUSH"


class ReplayedPush(Forbidden):
    name = "REPLAYED_PUSH"


class PushInProgress(ServiceError):
    """The same push is being processed elsewhere and its outcome is not known yet: WeChat
    should ask again rather than be told "success" for work that may still fail."""

    status = 503
    name = "PUSH_IN_PROGRESS"


# The one answer to an encrypted push that passed its msg_signature and still cannot be read:
# one status, name, message and details whatever went wrong (padding oracle, §11).
UNREADABLE_PUSH = "the encrypted push cannot be read; check WECHAT_AES_KEY and WECHAT_APPID"


@dataclass(frozen=True)
class Push:
    fields: dict[str, Any]
    encrypted: bool
    timestamp: str
    nonce: str


@dataclass(frozen=True)
class PushQuery:
    """A push's query, each parameter present and well-formed (push/contract.py)."""

    signature: str
    timestamp: str
    nonce: str
    encrypted: bool  # encrypt_type=aes
    msg_signature: str | None


@dataclass(frozen=True)
class ServerUrlCheck:
    """The query of WeChat's server-URL check, each parameter present (push/contract.py)."""

    signature: str
    timestamp: str
    nonce: str
    echostr: str


def _check_age(timestamp: str, now: float, max_age: int) -> None:
    """WeChat's timestamp is seconds since the epoch, stamped when it sends the push."""
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise StalePush(
            "timestamp must be WeChat's seconds since the epoch", field="timestamp", value=timestamp
        )
    if abs(now - int(timestamp)) > max_age:
        raise StalePush(
            f"the push's timestamp is more than PUSH_MAX_AGE ({max_age} s) from now: "
            "check this server's clock, or the push was replayed",
            field="timestamp",
            value=timestamp,
        )


def _parse(body: bytes) -> dict[str, Any]:
    try:
        fields = parse_message(body)
    except MessageXmlError as exc:
        raise InvalidMessage(str(exc), field="body") from None
    return fields


def _check_fields(fields: Mapping[str, Any]) -> None:
    """What handling relies on: who sent it, and when, as WeChat writes them (§10)."""
    for name in IDENTITY_FIELDS:
        if not isinstance(fields.get(name, ""), str):
            raise InvalidMessage(f"<{name}> has child elements", field=name)
    created = fields.get("CreateTime")
    if created is not None and not (
        isinstance(created, str)
        and created.isascii()
        and created.isdigit()
        and int(created) <= MAX_CREATE_TIME
    ):
        raise InvalidMessage(
            "CreateTime is WeChat's whole seconds since the epoch",
            field="CreateTime",
            value=created if isinstance(created, str) else None,
        )
    if dedup_key(fields) is None:
        raise InvalidMessage("a push names its sender and time", field="FromUserName")


def dedup_key(fields: Mapping[str, str]) -> str | None:
    """§10: messages by MsgId, events by FromUserName + CreateTime (and the event's name)."""
    if fields.get("MsgId"):
        return f"msg:{fields['MsgId']}"
    sender, created = fields.get("FromUserName"), fields.get("CreateTime")
    if sender and created:
        return f"event:{sender}:{created}:{fields.get('Event', '')}"
    return None


def text_of(fields: Mapping[str, Any], name: str) -> str:
    """A field's text; "" when absent or when it nests elements."""
    value = fields.get(name, "")
    return value if isinstance(value, str) else ""


@dataclass(frozen=True, kw_only=True)
class PushHandler:
    """WeChat's pushes and its server-URL check, with what acting on them needs; built once
    when the service starts."""

    settings: Settings
    clock: Clock
    store: Store
    qr_sign_in: QrSignIn
    background: Background
    crypto: MessageCrypto | None
    metrics: Metrics | None = None

    async def verify_server_url(self, check: ServerUrlCheck) -> str:
        """WeChat's server-URL check (§10): its echostr, once signature, age and nonce pass.

        The GET's signed (timestamp, nonce) is claimed like a push's, so a copy of its query from
        an access log cannot carry a forged POST; WeChat asking again with the same echostr is
        answered again."""
        timestamp, nonce, signature, echostr = (
            check.timestamp,
            check.nonce,
            check.signature,
            check.echostr,
        )
        expected = wechat_signature(self.settings.wechat_token, timestamp, nonce)
        if not signature_matches(expected, signature):
            raise InvalidSignature(
                "signature does not match WECHAT_TOKEN", field="signature", value=signature
            )
        _check_age(timestamp, self.clock.now(), self.settings.push_max_age)
        await self.claim_nonce(timestamp, nonce, b"echostr:" + echostr.encode())
        return echostr

    async def claim_nonce(self, timestamp: str, nonce: str, content: bytes) -> None:
        """Remember a signed request's (timestamp, nonce) for as long as its timestamp is accepted.

        A second request with the same pair is a replay, unless it is WeChat's retry of the same
        message, byte for byte, which goes on to be answered as the first was (de-duplication).
        Shared by every instance through MongoDB's unique _id. Kept twice PUSH_MAX_AGE past the
        timestamp: MongoDB expires records by its own clock, and one running ahead of ours must not
        free a pair that is still accepted here.
        """
        digest = hashlib.sha256(content).hexdigest()
        earlier = await self.store.claim_push_nonce(
            timestamp, nonce, digest, int(timestamp) + 2 * self.settings.push_max_age
        )
        if earlier is not None and not hmac.compare_digest(earlier, digest):
            raise ReplayedPush(
                "this timestamp and nonce were already used by another request from WeChat",
                field="nonce",
                value=nonce,
            )

    async def receive(self, query: PushQuery, body: bytes) -> str:
        """One push, from its query and body to the reply: verified, fresh, unreplayed, handled.

        Only a plain push's (timestamp, nonce) is claimed: its signature never covers the body.
        An encrypted push's msg_signature covers its ciphertext, so its query cannot carry
        another body, and the same bytes again are a retry that de-duplication answers without
        processing; its record is kept as long as the nonce's would be (handle). One store
        write a push instead of two (bench/README.md)."""
        push = self.verify(query, body)
        if not push.encrypted:
            await self.claim_nonce(push.timestamp, push.nonce, body)
        return await self.handle(push)

    async def handle(self, push: Push) -> str:
        """Act on a verified push; the reply body (\"success\", or a passive reply)."""
        fields = push.fields
        key = dedup_key(fields)
        assert key is not None  # verify() refuses pushes without one
        msg_type = text_of(fields, "MsgType")
        # Known before anything is stored, so it is stored with the delivery in one write, and a
        # retry arriving while the first delivery is processed already gets the same answer.
        reply = self._text_reply(fields) if msg_type == "text" else None
        # Only events are acted on; any other push is done once its record (and reply) is
        # written, so that one write is all it costs.
        acted_on = msg_type == "event"
        # Kept while a replay of the push would pass its age check, with the same margin for
        # the database's clock as a claimed nonce: for an encrypted push this record is what
        # refuses a replay (receive).
        retention = max(
            DEDUP_RETENTION,
            int(push.timestamp) + 2 * self.settings.push_max_age - int(self.clock.now()),
        )
        deadline = time.monotonic() + IN_PROGRESS_WAIT
        while True:
            earlier = await self.store.first_delivery(
                key, retention, reply, ABANDONED_AFTER, done=not acted_on
            )
            if earlier is None:
                break  # ours to process
            if earlier.get("done", True):
                # WeChat retries when our answer was late; the first delivery was processed, so
                # answer again what it answered, and do nothing twice.
                log.info("WeChat retried a push already received; answered again, not processed")
                return self._seal(push, earlier.get("reply"))
            # The first delivery is still being processed (here or on another instance): its
            # outcome decides. Acknowledging now would lose the push if that processing fails.
            if time.monotonic() >= deadline:
                raise PushInProgress(
                    "this push is still being processed; WeChat will deliver it again",
                    field="MsgId" if fields.get("MsgId") else "CreateTime",
                )
            await asyncio.sleep(IN_PROGRESS_POLL)
        # The kind of push only (%r: no line breaks): its fields carry openids and sign-in scenes.
        kind = f"event/{text_of(fields, 'Event')}" if msg_type == "event" else msg_type
        log.info("push received: %r", kind[:MAX_LOGGED_KIND])
        if acted_on:
            try:
                await self._on_event(fields)
            except BaseException:
                # Not processed after all (an error, or cancelled at shutdown): let WeChat's
                # retry be processed rather than skipped.
                await asyncio.shield(self.store.forget_delivery(key))
                raise
            await self.store.delivery_done(key)
        return self._seal(push, reply)

    def _seal(self, push: Push, reply: str | None) -> str:
        """`success`, or the passive reply, encrypted when the push was (§11)."""
        if not reply:
            return "success"
        if push.encrypted and self.crypto is not None:
            return self.crypto.encrypted_reply(reply, push.timestamp, push.nonce)
        return reply

    def verify(self, query: PushQuery, body: bytes) -> Push:
        """Check the signature the configured mode asks for and the push's age, decrypt, parse.

        Nothing is stored. In plain mode the signature covers the token, timestamp and nonce but
        never the body (§10), so a signature copied from any log would validate any body: the
        timestamp must be recent here, and the (timestamp, nonce) pair unused (claim_nonce).
        """
        settings, crypto, now = self.settings, self.crypto, self.clock.now()
        timestamp, nonce, signature = query.timestamp, query.nonce, query.signature
        encrypted = query.encrypted
        mode = settings.wechat_message_mode
        if encrypted and crypto is None:
            raise InvalidSignature(
                "encrypted pushes need WECHAT_MESSAGE_MODE=compatible or safe and WECHAT_AES_KEY",
                field="encrypt_type",
                value="aes",
            )
        if mode != "plain" and not encrypted:
            # §10: in compatible and safe modes WeChat adds encrypt_type=aes and msg_signature to
            # every push; one without them did not come from WeChat.
            raise InvalidSignature(
                f"{mode} mode accepts encrypted pushes only (encrypt_type=aes with msg_signature)",
                field="encrypt_type",
                value=None,
            )
        if not encrypted:
            expected = wechat_signature(settings.wechat_token, timestamp, nonce)
            if not signature_matches(expected, signature):
                raise InvalidSignature(
                    "signature does not match WECHAT_TOKEN", field="signature", value=signature
                )
            _check_age(timestamp, now, settings.push_max_age)
            fields = _parse(body)
            _check_fields(fields)
            return Push(fields, False, timestamp, nonce)

        assert crypto is not None
        msg_signature = query.msg_signature
        if not msg_signature:
            raise InvalidSignature(
                "an encrypted push carries msg_signature (§11)", field="msg_signature", value=None
            )
        outer = _parse(body)
        encrypt = outer.get("Encrypt")
        if not encrypt or not isinstance(encrypt, str):
            raise InvalidMessage("an encrypted push carries an Encrypt element", field="Encrypt")
        # msg_signature covers the ciphertext, so it is checked before anything is decrypted.
        if not crypto.check_signature(msg_signature, timestamp, nonce, encrypt):
            raise InvalidSignature(
                "msg_signature does not match", field="msg_signature", value=msg_signature
            )
        _check_age(timestamp, now, settings.push_max_age)
        # From here on the sender is someone who knows WECHAT_TOKEN; whatever is wrong with the
        # ciphertext or what it decrypts to gets one answer, or the differences are an oracle.
        try:
            fields = parse_message(crypto.decrypt(encrypt))
            _check_fields(fields)
        except (MessageCryptoError, MessageXmlError, InvalidMessage):
            if self.metrics is not None:
                self.metrics.push_unreadable.inc()
            raise InvalidMessage(UNREADABLE_PUSH, field="Encrypt") from None
        return Push(fields, True, timestamp, nonce)

    async def _on_event(self, fields: Mapping[str, Any]) -> None:
        event = text_of(fields, "Event")
        openid = fields.get("FromUserName", "")
        key = text_of(fields, "EventKey")
        created = int(fields.get("CreateTime") or self.clock.now())  # digits: _check_fields
        if event == "subscribe":
            scene = key[len(QR_SCENE_PREFIX) :] if key.startswith(QR_SCENE_PREFIX) else None
            await self.store.record_follow_state(
                openid,
                subscribed=True,
                subscribe_time=created,
                subscribe_scene="ADD_SCENE_QR_CODE" if scene else None,
                unionid=None,
            )
            if scene:
                await self._on_scan(scene, openid, new_follower=True)
        elif event == "SCAN":
            await self._on_scan(key, openid, new_follower=False)
        elif event == "unsubscribe":
            await self.store.record_follow_state(
                openid, subscribed=False, subscribe_time=None, subscribe_scene=None, unionid=None
            )

    async def _on_scan(self, scene: str, openid: str, new_follower: bool) -> None:
        if not is_login_scene(scene):
            log.info("scan of QR scene %r (not a sign-in code)", scene)
            return
        if await self.qr_sign_in.scanned(scene, openid, new_follower):
            self.background.spawn("qr sign-in", self.qr_sign_in.confirm(scene, openid))

    def _text_reply(self, fields: Mapping[str, str]) -> str | None:
        text = self.settings.message_text_reply
        if not text:
            return None
        # Back to the sender, from the account it wrote to.
        sender, account = fields.get("FromUserName", ""), fields.get("ToUserName", "")
        return text_reply(sender, account, int(self.clock.now()), text)


def message_crypto(settings: Settings) -> MessageCrypto | None:
    if settings.wechat_message_mode == "plain" or not settings.wechat_aes_key:
        return None
    return MessageCrypto(settings.wechat_token, settings.wechat_aes_key, settings.wechat_appid)


XML_REPLY = "application/xml; charset=utf-8"
TEXT_REPLY = "text/plain; charset=utf-8"


def reply_content_type(reply: str) -> str:
    """The Content-Type header of a reply, written out as aiohttp's text= would make it."""
    return XML_REPLY if reply.startswith("<xml>") else TEXT_REPLY
