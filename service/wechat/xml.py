"""WeChat's message XML: one flat <xml> element of named fields, text in CDATA."""

from __future__ import annotations

from collections.abc import Mapping

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring


class MessageXmlError(ValueError):
    """Not a WeChat message: malformed, not <xml>, nested, or with DTDs/entities (refused)."""


def parse_message(body: bytes | str) -> dict[str, str]:
    """The fields of a message. defusedxml refuses DTDs, entities and external references, so
    a hostile body cannot expand a billion laughs or read local files."""
    try:
        root = fromstring(body, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise MessageXmlError(f"malformed XML: {type(exc).__name__}") from None
    if root.tag != "xml":
        raise MessageXmlError("the root element is not <xml>")
    fields: dict[str, str] = {}
    for child in root:
        if len(child):
            raise MessageXmlError(f"<{child.tag}> has child elements")
        fields[child.tag] = (
            (child.text or "").strip() if child.tag != "Content" else (child.text or "")
        )
    return fields


def cdata(text: str) -> str:
    # "]]>" cannot appear inside CDATA; split it across two sections.
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def build_message(fields: Mapping[str, str | int]) -> str:
    """<xml> with text fields in CDATA and integers (CreateTime, MsgId) bare, as WeChat sends."""
    parts = []
    for name, value in fields.items():
        body = str(value) if isinstance(value, int) else cdata(value)
        parts.append(f"<{name}>{body}</{name}>")
    return "<xml>" + "".join(parts) + "</xml>"
