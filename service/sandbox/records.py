"""What the emulator remembers of a push it sent: its own module, so the state that keeps the
records and the code that sends pushes both depend on it, not on each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PushRecord:
    """One event push and how it went."""

    at: float  # the emulator's clock when the push started
    mode: str  # plain | compatible | safe
    fields: dict[str, Any]  # the event, as in the plaintext XML
    attempts: int
    delivered: bool
    status: int | None  # the last HTTP status received, None when none came
    reply: str  # the last reply's body ("" when none)
    reply_fields: dict[str, Any] | None  # an XML reply's fields, decrypted in safe mode
    error: str  # why it was not delivered ("" when it was)
    appid: str = ""  # the Official Account it was pushed for (its message_url, token, 原始ID)

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "appid": self.appid,
            "toUserName": self.fields.get("ToUserName", ""),
            "mode": self.mode,
            "msgType": self.fields.get("MsgType", ""),
            "event": self.fields.get("Event", ""),
            "eventKey": self.fields.get("EventKey", ""),
            "openid": self.fields.get("FromUserName", ""),
            "fields": self.fields,
            "attempts": self.attempts,
            "delivered": self.delivered,
            "status": self.status,
            "reply": self.reply,
            "replyFields": self.reply_fields,
            "error": self.error,
        }
