"""WeChat's message XML: an <xml> element of named fields, text in CDATA, some of them nested.

Most pushes are flat, but menu events carry nested elements (scancode_push's ScanCodeInfo,
pic_sysphoto's SendPicsInfo/PicList/item, location_select's SendLocationInfo),
MASSSENDJOBFINISH its CopyrightCheckResult/ResultList/item, and the subscribe-message popup its
SubscribeMsgPopupEvent/List (one List per template). A server that refuses those answers 400,
the user sees "该公众号暂时无法提供服务" and WeChat retries (§10 of wechat-api.md), so every
well-formed message is read, nested or not.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

# WeChat's deepest documented push nests four elements below <xml> (MASSSENDJOBFINISH's
# CopyrightCheckResult/ResultList/item/ArticleIdx); a hostile body nests thousands deep in a
# few kilobytes. Both bounds are generous for WeChat and cheap for anyone else.
MAX_DEPTH = 8  # elements below <xml>
MAX_ELEMENTS = 1000  # <xml> included

# XML names as WeChat uses them (ASCII letters, digits, "_", "-", "."): what build_message
# writes, so a field name taken from outside cannot carry markup.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")

# A parsed value: the text of a leaf element, a dict of a nested element's children, or a
# list of the values of a name that occurs more than once in the same parent.
XmlValue = str | dict[str, Any] | list[Any]


class MessageXmlError(ValueError):
    """Not a WeChat message: malformed, not <xml>, too deep or too big, or with DTDs/entities
    (refused)."""


def parse_message(body: bytes | str) -> dict[str, Any]:
    """The fields of a message, by element name, in document order.

    - A leaf element is its text as a str, stripped of surrounding whitespace, except the
      top-level <Content> (a text message's words), which is kept exactly as sent.
    - An element with child elements is a dict of its children, read by the same rules (its
      own text between the children is layout, and dropped; attributes are not used by
      WeChat and are dropped too).
    - A name that occurs more than once under the same parent is a list of the values, in
      order: pic_sysphoto's PicList with two <item>s, a popup with two <List>s. Once, it is
      the value itself, so a caller expecting a list wraps a lone dict (see as_list).

    So callers read flat fields as before (fields["MsgType"], fields.get("Event")); a top-level
    field they expect as text may be a dict or list in a hostile body: check with isinstance.
    defusedxml refuses DTDs, entities and external references, so a hostile body cannot expand
    a billion laughs or read local files; MAX_DEPTH and MAX_ELEMENTS bound the rest.
    """
    try:
        root = fromstring(body, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise MessageXmlError(f"malformed XML: {type(exc).__name__}") from None
    if root.tag != "xml":
        raise MessageXmlError("the root element is not <xml>")
    # Counted before anything is converted (iter() walks the tree without recursing).
    if next(itertools.islice(root.iter(), MAX_ELEMENTS, None), None) is not None:
        raise MessageXmlError(f"more than {MAX_ELEMENTS} elements")
    return _children(root, 0)


def _children(parent: Any, depth: int) -> dict[str, Any]:
    if depth >= MAX_DEPTH:
        raise MessageXmlError(f"elements nest more than {MAX_DEPTH} deep")
    fields: dict[str, Any] = {}
    repeated: set[str] = set()
    for child in parent:
        if not isinstance(child.tag, str):
            continue  # comments and processing instructions (the C parser drops them anyway)
        if len(child):
            value: XmlValue = _children(child, depth + 1)
        elif depth == 0 and child.tag == "Content":
            value = child.text or ""
        else:
            value = (child.text or "").strip()
        name = child.tag
        if name not in fields:
            fields[name] = value
        elif name in repeated:
            fields[name].append(value)
        else:
            fields[name] = [fields[name], value]
            repeated.add(name)
    return fields


def as_list(value: Any) -> list[Any]:
    """A repeatable element's values as a list, whether it occurred once, several times or
    not at all (None)."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def cdata(text: str) -> str:
    # "]]>" cannot appear inside CDATA; split it across two sections.
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def build_message(fields: Mapping[str, Any]) -> str:
    """<xml> with text in CDATA and numbers (CreateTime, MsgId, Latitude) bare, as WeChat sends.

    The shapes parse_message returns build back: a mapping is a nested element, a list
    repeats its name once per value (`{"PicList": {"item": [{...}, {...}]}}` is two <item>s).
    ValueError for a name that is not a plain XML name, a value of another type (bool, None),
    or nesting deeper than MAX_DEPTH.
    """
    parts: list[str] = []
    _build(fields, parts, 0)
    return "<xml>" + "".join(parts) + "</xml>"


def _build(fields: Mapping[str, Any], parts: list[str], depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise ValueError(f"elements nest more than {MAX_DEPTH} deep")
    for name, value in fields.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{name!r} is not an XML element name")
        for item in value if isinstance(value, list) else [value]:
            parts.append(f"<{name}>")
            if isinstance(item, Mapping):
                _build(item, parts, depth + 1)
            elif isinstance(item, str):
                parts.append(cdata(item))
            elif isinstance(item, int | float) and not isinstance(item, bool):
                if isinstance(item, float) and not math.isfinite(item):
                    raise ValueError(f"<{name}> must be a finite number")
                parts.append(str(item))
            else:
                raise ValueError(f"<{name}> must be text, a number, an object or a list")
            parts.append(f"</{name}>")
