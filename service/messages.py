"""WeChat's pushes to POST /wechat/message: verified, decrypted, de-duplicated, acted on.

WeChat waits 5 seconds for the reply and retries the same push when none comes (§10 of
wechat-api.md), so the reply goes out after quick store writes only; calls to WeChat (the
follower's record for a QR sign-in) run afterwards, and retried pushes are recognised and
acknowledged without being processed twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from . import qr_login
from .background import Background
from .clock import Clock
from .config import Settings
from .errors import BadRequest, InvalidSignature, MissingParameter
from .signature import signature_matches, wechat_signature
from .store import Store
from .tokens import BaseTokenKeeper
from .wechat.client import WeChatClient
from .wechat.crypto import MessageCrypto, MessageCryptoError
from .wechat.xml import MessageXmlError, build_message, parse_message

log = logging.getLogger(__name__)

DEDUP_RETENTION = 3600  # WeChat's retries come within about 15 s; an hour is ample
QR_SCENE_PREFIX = "qrscene_"


class InvalidMessage(BadRequest):
    name = "INVALID_MESSAGE"


@dataclass(frozen=True)
class Push:
    fields: dict[str, str]
    encrypted: bool
    timestamp: str
    nonce: str


@dataclass(frozen=True)
class MessageServices:
    settings: Settings
    clock: Clock
    store: Store
    keeper: BaseTokenKeeper
    wechat: WeChatClient
    waiters: qr_login.LoginWaiters
    background: Background
    crypto: MessageCrypto | None


def _required(params: Mapping[str, str | None], name: str) -> str:
    value = params.get(name)
    if not value:
        raise MissingParameter(f"{name} is required", field=name, value=value)
    return value


def verify_push(
    settings: Settings, crypto: MessageCrypto | None, params: Mapping[str, str | None], body: bytes
) -> Push:
    """Check the signature the configured mode asks for, decrypt, parse. Nothing is stored."""
    timestamp = _required(params, "timestamp")
    nonce = _required(params, "nonce")
    signature = _required(params, "signature")
    encrypted = params.get("encrypt_type") == "aes"
    mode = settings.wechat_message_mode
    if encrypted and crypto is None:
        raise InvalidSignature(
            "encrypted pushes need WECHAT_MESSAGE_MODE=compatible or safe and WECHAT_AES_KEY",
            field="encrypt_type",
            value="aes",
        )
    if mode == "safe" and not encrypted:
        raise InvalidSignature(
            "safe mode accepts encrypted pushes only", field="encrypt_type", value=None
        )
    if encrypted:
        assert crypto is not None
        msg_signature = _required(params, "msg_signature")
        outer = _parse(body)
        encrypt = outer.get("Encrypt")
        if not encrypt:
            raise InvalidMessage("an encrypted push carries an Encrypt element", field="Encrypt")
        # msg_signature covers the ciphertext, so it is checked before anything is decrypted.
        if not crypto.check_signature(msg_signature, timestamp, nonce, encrypt):
            raise InvalidSignature(
                "msg_signature does not match", field="msg_signature", value=msg_signature
            )
        try:
            inner = crypto.decrypt(encrypt)
        except MessageCryptoError as exc:
            raise InvalidMessage(
                f"cannot decrypt the push ({exc}); check WECHAT_AES_KEY", field="Encrypt"
            ) from None
        return Push(_parse(inner.encode()), True, timestamp, nonce)
    expected = wechat_signature(settings.wechat_token, timestamp, nonce)
    if not signature_matches(expected, signature):
        raise InvalidSignature(
            "signature does not match WECHAT_TOKEN", field="signature", value=signature
        )
    return Push(_parse(body), False, timestamp, nonce)


def _parse(body: bytes) -> dict[str, str]:
    try:
        fields = parse_message(body)
    except MessageXmlError as exc:
        raise InvalidMessage(str(exc), field="body") from None
    return fields


def dedup_key(fields: Mapping[str, str]) -> str | None:
    """§10: messages by MsgId, events by FromUserName + CreateTime (and the event's name)."""
    if fields.get("MsgId"):
        return f"msg:{fields['MsgId']}"
    sender, created = fields.get("FromUserName"), fields.get("CreateTime")
    if sender and created:
        return f"event:{sender}:{created}:{fields.get('Event', '')}"
    return None


async def handle_push(services: MessageServices, push: Push) -> str:
    """Act on a verified push; the reply body (\"success\", or a passive reply)."""
    fields = push.fields
    key = dedup_key(fields)
    if key is None:
        raise InvalidMessage("a push names its sender and time", field="FromUserName")
    msg_type = fields.get("MsgType", "")
    # Known before anything is stored, so it is stored with the delivery in one write, and a
    # retry arriving while the first delivery is processed already gets the same answer.
    reply = _text_reply(services, fields) if msg_type == "text" else None
    earlier = await services.store.first_delivery(key, DEDUP_RETENTION, reply)
    if earlier is not None:
        # WeChat retries when our answer was late; the first delivery was (or is being)
        # processed, so answer again what it answered, and do nothing twice.
        log.info("WeChat retried a push already received; answered again, not processed")
        return _seal(services, push, earlier.get("reply"))
    try:
        if msg_type == "event":
            await _on_event(services, fields)
        elif msg_type != "text":
            log.info("push of message type %r acknowledged", msg_type)
    except Exception:
        # Not processed after all: let WeChat's retry be processed rather than skipped.
        await services.store.forget_delivery(key)
        raise
    return _seal(services, push, reply)


def _seal(services: MessageServices, push: Push, reply: str | None) -> str:
    """`success`, or the passive reply, encrypted when the push was (§11)."""
    if not reply:
        return "success"
    if push.encrypted and services.crypto is not None:
        return services.crypto.encrypted_reply(reply, push.timestamp, push.nonce)
    return reply


async def _on_event(services: MessageServices, fields: Mapping[str, str]) -> None:
    event = fields.get("Event", "")
    openid = fields.get("FromUserName", "")
    key = fields.get("EventKey", "")
    created = int(fields.get("CreateTime") or services.clock.now())
    if event == "subscribe":
        scene = key[len(QR_SCENE_PREFIX) :] if key.startswith(QR_SCENE_PREFIX) else None
        await services.store.record_follow_state(
            openid,
            subscribed=True,
            subscribe_time=created,
            subscribe_scene="ADD_SCENE_QR_CODE" if scene else None,
            unionid=None,
        )
        if scene:
            await _on_scan(services, scene, openid, new_follower=True)
    elif event == "SCAN":
        await _on_scan(services, key, openid, new_follower=False)
    elif event == "unsubscribe":
        await services.store.record_follow_state(
            openid, subscribed=False, subscribe_time=None, subscribe_scene=None, unionid=None
        )
    else:
        log.info("WeChat event %r acknowledged", event)


async def _on_scan(services: MessageServices, scene: str, openid: str, new_follower: bool) -> None:
    if not qr_login.is_login_scene(scene):
        log.info("scan of QR scene %r (not a sign-in code)", scene)
        return
    if await qr_login.scanned(services.store, services.waiters, scene, openid, new_follower):
        services.background.spawn(
            "qr sign-in",
            qr_login.confirm(
                services.store,
                services.keeper,
                services.wechat,
                services.waiters,
                scene,
                openid,
            ),
        )


def _text_reply(services: MessageServices, fields: Mapping[str, str]) -> str | None:
    text = services.settings.message_text_reply
    if not text:
        return None
    return build_message(
        {
            "ToUserName": fields.get("FromUserName", ""),
            "FromUserName": fields.get("ToUserName", ""),
            "CreateTime": int(services.clock.now()),
            "MsgType": "text",
            "Content": text,
        }
    )


def message_crypto(settings: Settings) -> MessageCrypto | None:
    if settings.wechat_message_mode == "plain" or not settings.wechat_aes_key:
        return None
    return MessageCrypto(settings.wechat_token, settings.wechat_aes_key, settings.wechat_appid)


def reply_content_type(reply: str) -> str:
    return "application/xml" if reply.startswith("<xml>") else "text/plain"
