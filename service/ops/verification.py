"""WeChat's domain verification files: MP_verify_<code>.txt at the root of the 网页授权域名.

Before WeChat accepts a domain as the account's 网页授权域名 (or JS接口安全域名), it fetches a file
it names, MP_verify_<code>.txt, from the domain's root. WECHAT_VERIFY_FILES lists such files;
config.verify_files reads them at start (refusing other names and anything over 4 KiB), and the
service's layer answers GET /<name> with the content, as text/plain.

Not a route, so not in /openapi.json, where every route is an operation of the API: such a file
is nothing an app calls, only WeChat's check that the operator controls the domain (as static
files, it stays out of the document). No route matches it (the catch-all's
404, pipeline/routing.py); the service's layer asks `answer` before it answers that 404.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web


def answer(request: web.Request, exc: Exception, files: Mapping[str, bytes]) -> web.Response | None:
    """The file a GET or HEAD of /<name> asks for, when no route matched; None otherwise."""
    if not files or not isinstance(exc, web.HTTPNotFound) or request.method not in ("GET", "HEAD"):
        return None
    content = files.get(request.path[1:])
    if content is None:
        return None
    return web.Response(
        body=content,
        content_type="text/plain",
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )
