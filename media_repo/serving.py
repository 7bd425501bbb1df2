"""Safe serving of media bodies: the headers that stop media attacking any origin.

Media is whatever users upload, so a response must never be rendered as a page of the
API origin: CSP sandbox, nosniff, and `attachment` for anything not on a short list of
types browsers only ever display (images other than SVG, audio, video, plain text).
Range requests, If-None-Match and the ETag are handled by aiohttp's FileResponse (with
sendfile); the ETag is made from the immutable file's size and mtime.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from aiohttp import web

# Everything else is served as an attachment. SVG is absent on purpose: it runs script.
INLINE_SAFE_TYPES = frozenset({
    "text/plain", "text/csv",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "image/bmp",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave",
    "audio/wav", "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
})

SAFE_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Referrer-Policy": "no-referrer",
}
# Bodies never change under a media ID; `private` for authenticated media so shared
# caches do not serve it to requests without the token.
CACHE_AUTHENTICATED = "private, max-age=31536000, immutable"
CACHE_PUBLIC = "public, max-age=31536000, immutable"


def base_type(content_type: str | None) -> str:
    return (content_type or "application/octet-stream").split(";", 1)[0].strip().lower()


def content_disposition(content_type: str | None, filename: str | None) -> str:
    """RFC 6266: `inline` only for safe types; the name as an RFC 5987 `filename*`
    (any UTF-8), with a plain `filename` too when it is simple ASCII."""
    kind = "inline" if base_type(content_type) in INLINE_SAFE_TYPES else "attachment"
    if not filename:
        return kind
    value = kind
    if all(32 < ord(c) < 127 and c not in '"\\;,%' for c in filename):
        value += f'; filename="{filename}"'
    return value + f"; filename*=utf-8''{quote(filename, safe='')}"


def serve_file(path: Path, content_type: str | None, filename: str | None, *,
               authenticated: bool) -> web.FileResponse:
    response = web.FileResponse(path, chunk_size=256 * 1024)
    ctype = content_type or "application/octet-stream"
    # text/html and the like keep their type (clients need it) but are made harmless by
    # the headers below; attachment stops a browser rendering them even if opened.
    response.headers["Content-Type"] = ctype
    response.headers["Content-Disposition"] = content_disposition(ctype, filename)
    response.headers["Cache-Control"] = CACHE_AUTHENTICATED if authenticated else CACHE_PUBLIC
    response.headers.update(SAFE_HEADERS)
    return response
