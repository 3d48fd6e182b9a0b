"""WeChat's message XML: an <xml> element of named fields, text in CDATA, some of them nested.

Most pushes are flat, but menu events carry nested elements (scancode_push's ScanCodeInfo,
pic_sysphoto's SendPicsInfo/PicList/item, location_select's SendLocationInfo),
MASSSENDJOBFINISH its CopyrightCheckResult/ResultList/item, and the subscribe-message popup its
SubscribeMsgPopupEvent/List (one List per template). A server that refuses those answers 400,
the user sees "该公众号暂时无法提供服务" and WeChat retries (§10 of wechat-api.md), so every
well-formed message is read, nested or not.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Any
from xml.parsers import expat

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

    Read in one pass by expat (the parser under ElementTree and defusedxml) with the defences
    defusedxml's forbid_dtd, forbid_entities and forbid_external set: a DOCTYPE, an entity
    declaration or an external reference stops the parse, so a hostile body cannot expand a
    billion laughs or read local files; an undeclared entity is malformed. MAX_DEPTH and
    MAX_ELEMENTS stop it as soon as they are passed. Building ElementTree's and defusedxml's
    parser objects, then a tree, then walking it was a fifth of a safe-mode push's server time
    (bench/README.md); this builds the fields directly.

    A flat message as WeChat writes it (what nearly every push is) is read by `_flat_fields`
    first, in a third of expat's time; anything else it meets, it leaves to expat.
    """
    flat = _flat_fields(body)
    if flat is not None:
        return flat
    return _parse_with_expat(body)


def _parse_with_expat(body: bytes | str) -> dict[str, Any]:
    reader = _Reader()
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse_external
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.text
    parser.buffer_text = True
    try:
        parser.Parse(body, True)
    except (expat.ExpatError, ValueError) as exc:
        if isinstance(exc, MessageXmlError):
            raise
        raise MessageXmlError(f"malformed XML: {type(exc).__name__}") from None
    if reader.root is None:
        raise MessageXmlError("malformed XML: no element")
    return reader.root


# The flat subset, in XML's own terms: "<xml>", then elements of plain names, each holding one
# CDATA section or character data without markup, "]" or references, with only XML whitespace
# between them, then "</xml>". No declaration, DTD, comment, attribute, nesting or repeated
# name: those, and any body this does not read whole, go to expat. Nor carriage returns (XML
# normalises line ends, in CDATA too) or characters XML 1.0 forbids (expat refuses them): the
# value patterns leave them out, so no second pass looks for them.
_CHARS_ABOVE_BRACKET = r"\x5e-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff"  # XML's Char from "^" up
_CDATA_CHAR = rf"[\t\n\x20-\x5c{_CHARS_ABOVE_BRACKET}]"  # any but "]" and CR
_TEXT_CHAR = rf"[\t\n\x20-\x25\x27-\x3b\x3d-\x5c{_CHARS_ABOVE_BRACKET}]"  # nor "&" or "<"
# Possessive (*+): what a run matched is never given back, so a body that is not flat fails in
# one pass. Backtracking, a 60 KB run of "]" took 12 ms before it went to expat; now 1.3 ms,
# about what expat then takes to refuse it.
_FLAT_START = re.compile(r"[ \t\n]*+<xml>")
_FLAT_FIELD = re.compile(
    r"[ \t\n]*+<([A-Za-z_][A-Za-z0-9_.-]*+)>"
    # A CDATA section up to its first "]]>" (runs of anything but "]", and any "]" that does
    # not start "]]>"), or character data.
    rf"(?:<!\[CDATA\[({_CDATA_CHAR}*+(?:\](?!\]>){_CDATA_CHAR}*+)*+)\]\]>|({_TEXT_CHAR}*+))"
    r"</\1>"
)
_FLAT_END = re.compile(r"[ \t\n]*+</xml>[ \t\n]*+\Z")


def _flat_fields(body: bytes | str) -> dict[str, Any] | None:
    """parse_message's fields of a flat message, exactly as expat would read them, or None
    for expat to read (or refuse) the body. The text rules are parse_message's: top-level
    <Content> as sent, every other value stripped."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return None
    else:
        text = body
    start = _FLAT_START.match(text)
    if start is None:
        return None
    fields: dict[str, Any] = {}
    at = start.end()
    while (field := _FLAT_FIELD.match(text, at)) is not None:
        name, in_cdata, plain = field.groups()
        if name in fields or len(fields) >= MAX_ELEMENTS - 1:
            return None  # a list, or too many: expat's rules
        value = plain if in_cdata is None else in_cdata
        fields[name] = value if name == "Content" else value.strip()
        at = field.end()
    if _FLAT_END.match(text, at) is None:
        return None
    return fields


def _refuse(*_: object) -> None:
    raise MessageXmlError("DTDs, entities and external references are refused")


def _refuse_external(
    _context: str, _base: str | None, _system_id: str | None, _public_id: str | None
) -> int:
    _refuse()
    return 0  # never reached: expat wants an int from this handler


class _Reader:
    """expat's callbacks building the fields: one open element's name, children, text, whether
    it has child elements, and its repeated names, per level."""

    __slots__ = ("count", "fields", "names", "nested", "repeated", "root", "texts")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.fields: list[dict[str, Any]] = []
        self.texts: list[list[str]] = []
        self.nested: list[bool] = []
        self.repeated: list[set[str]] = []
        self.count = 0
        self.root: dict[str, Any] | None = None

    def start(self, name: str, _attributes: object) -> None:
        self.count += 1
        if self.count > MAX_ELEMENTS:
            raise MessageXmlError(f"more than {MAX_ELEMENTS} elements")
        level = len(self.names)  # <xml> is level 0
        if level == 0:
            if name != "xml":
                raise MessageXmlError("the root element is not <xml>")
        elif level > MAX_DEPTH:
            raise MessageXmlError(f"elements nest more than {MAX_DEPTH} deep")
        else:
            self.nested[-1] = True
        self.names.append(name)
        self.fields.append({})
        self.texts.append([])
        self.nested.append(False)
        self.repeated.append(set())

    def end(self, name: str) -> None:
        self.names.pop()
        fields, texts = self.fields.pop(), self.texts.pop()
        nested = self.nested.pop()
        self.repeated.pop()
        level = len(self.names)
        if level == 0:
            self.root = fields
            return
        value: XmlValue
        if nested:
            value = fields
        elif level == 1 and name == "Content":
            value = "".join(texts)
        else:
            value = "".join(texts).strip()
        parent, repeated = self.fields[-1], self.repeated[-1]
        if name not in parent:
            parent[name] = value
        elif name in repeated:
            parent[name].append(value)
        else:
            parent[name] = [parent[name], value]
            repeated.add(name)

    def text(self, data: str) -> None:
        if self.texts:
            self.texts[-1].append(data)


def as_list(value: Any) -> list[Any]:
    """A repeatable element's values as a list, whether it occurred once, several times or
    not at all (None)."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def cdata(text: str) -> str:
    # "]]>" cannot appear inside CDATA; split it across two sections.
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(to_user: str, from_user: str, create_time: int, content: str) -> str:
    """A passive text reply (§10): what build_message writes for these five fields, in this
    order, with the part after the time written once per content rather than every push."""
    return (
        "<xml><ToUserName>"
        + cdata(to_user)
        + "</ToUserName><FromUserName>"
        + cdata(from_user)
        + "</FromUserName><CreateTime>"
        + str(create_time)
        + _text_reply_end(content)
    )


@functools.lru_cache(maxsize=16)
def _text_reply_end(content: str) -> str:
    return (
        "</CreateTime><MsgType><![CDATA[text]]></MsgType><Content>"
        + cdata(content)
        + "</Content></xml>"
    )


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
