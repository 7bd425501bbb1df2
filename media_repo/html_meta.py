"""OpenGraph metadata from an HTML page, with the stdlib parser (no I/O here).

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1mediapreview_url
(the response is "OpenGraph data"; https://ogp.me/ names the properties). Pages without
og:title or og:description fall back to <title> and <meta name="description">.
"""

from __future__ import annotations

from html.parser import HTMLParser

# Properties passed through to the client; og:image is resolved and stored separately.
OG_PROPERTIES = ("og:title", "og:description", "og:image", "og:image:width",
                 "og:image:height", "og:image:type", "og:site_name", "og:type", "og:url")
MAX_VALUE_LENGTH = 1000


class _MetaParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.og: dict[str, str] = {}
        self.description: str | None = None
        self.title: str | None = None
        self._title_parts: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            a = {k.lower(): v for k, v in attrs if v is not None}
            content = a.get("content")
            if content is None:
                return
            prop = (a.get("property") or a.get("name") or "").lower()
            # The first value wins: pages repeat og:image for alternatives.
            if prop in OG_PROPERTIES and prop not in self.og:
                self.og[prop] = content.strip()[:MAX_VALUE_LENGTH]
            elif prop == "description" and self.description is None:
                self.description = content.strip()[:MAX_VALUE_LENGTH]
        elif tag == "title" and self.title is None:
            self._title_parts = []

    def handle_data(self, data: str) -> None:
        if self._title_parts is not None:
            self._title_parts.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._title_parts is not None:
            self.title = " ".join("".join(self._title_parts).split())[:MAX_VALUE_LENGTH]
            self._title_parts = None


def parse_html_meta(text: str) -> dict[str, str]:
    """og:* properties found in `text`, with og:title/og:description filled from
    <title>/<meta name=description> when missing. Empty values are dropped."""
    parser = _MetaParser()
    parser.feed(text)
    parser.close()
    og = dict(parser.og)
    if "og:title" not in og and parser.title:
        og["og:title"] = parser.title
    if "og:description" not in og and parser.description:
        og["og:description"] = parser.description
    return {k: v for k, v in og.items() if v}
