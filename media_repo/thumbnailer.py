"""Thumbnail rendering with Pillow. Pure and blocking: callers run it in a thread.

Spec: https://spec.matrix.org/v1.19/client-server-api/#thumbnails
The image header is read first and its dimensions checked before any pixel is decoded,
so a small file that expands to gigabytes (a decompression bomb) is refused cheaply.
Thumbnails are re-encoded from pixels only, so EXIF (GPS position, camera serial) and
other metadata never reach them; EXIF orientation is applied first.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from PIL import Image

# Pillow is imported where pixels are touched, not at module import: ~3 MiB of resident
# memory a server that never thumbnails does not need (docs/benchmarks.md, idle RSS).

# Formats we decode. Others (PSD, EPS via Ghostscript, ...) widen the attack surface for
# no use in chat.
DECODABLE_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP"})
THUMBNAILABLE_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "image/gif",
                                 "image/webp", "image/bmp"})


class ThumbnailError(Exception):
    """The source cannot be thumbnailed: the message says why, for the client."""


@attrs.frozen
class Rendered:
    width: int
    height: int
    method: str
    animated: bool
    content_type: str
    data: bytes


@attrs.frozen
class Request:
    width: int
    height: int
    method: str  # scale | crop


class Thumbnailer:
    def __init__(self, max_image_pixels: int):
        self._max_pixels = max_image_pixels

    def render(self, source: Path, requests: list[Request], animated: bool = False) -> list[Rendered]:
        """Render every requested size from one decode of `source`."""
        from PIL import Image, ImageOps

        with self._open(source) as image:
            if animated and getattr(image, "is_animated", False):
                return [self._render_animated(image, r) for r in requests]
            try:
                image = ImageOps.exif_transpose(image)
                image.load()
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                raise ThumbnailError(f"Cannot decode image: {e}") from None
            return [self._render_still(image, r) for r in requests]

    def _open(self, source: Path) -> Image.Image:
        from PIL import Image, UnidentifiedImageError

        try:
            # Pillow's own bomb check warns (an error in tests) or raises at its global
            # limit; ours is checked explicitly below against the configured one.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(source, formats=sorted(DECODABLE_FORMATS))
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
                SyntaxError):
            raise ThumbnailError("Not an image this server can thumbnail") from None
        width, height = image.size
        frames = getattr(image, "n_frames", 1)
        if width <= 0 or height <= 0 or width * height * max(frames, 1) > self._max_pixels:
            image.close()
            raise ThumbnailError(f"Image too large to thumbnail ({width}x{height}, "
                                 f"{frames} frame(s))")
        return image

    def _render_still(self, image: Image.Image, req: Request) -> Rendered:
        keep_alpha = image.mode in ("RGBA", "LA", "PA") or (
            image.mode == "P" and "transparency" in image.info)
        image = image.convert("RGBA" if keep_alpha else "RGB")
        out = _resize(image, req)
        buf = io.BytesIO()
        if keep_alpha:
            out.save(buf, "PNG", optimize=True)
            content_type = "image/png"
        else:
            out.save(buf, "JPEG", quality=85)
            content_type = "image/jpeg"
        return Rendered(width=out.width, height=out.height, method=req.method, animated=False,
                        content_type=content_type, data=buf.getvalue())

    def _render_animated(self, image: Image.Image, req: Request) -> Rendered:
        frames: list[Image.Image] = []
        durations: list[int] = []
        try:
            for index in range(getattr(image, "n_frames", 1)):
                image.seek(index)
                frames.append(_resize(image.convert("RGBA"), req))
                durations.append(int(image.info.get("duration", 100)))
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise ThumbnailError(f"Cannot decode image: {e}") from None
        buf = io.BytesIO()
        frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=durations,
                       loop=0, quality=80)
        return Rendered(width=frames[0].width, height=frames[0].height, method=req.method,
                        animated=True, content_type="image/webp", data=buf.getvalue())


def _resize(image: Image.Image, req: Request) -> Image.Image:
    from PIL import Image, ImageOps

    if req.method == "crop":
        # Never upscale: shrink the target box, keeping its aspect ratio, to fit the source.
        factor = min(1.0, image.width / req.width, image.height / req.height)
        box = (max(1, round(req.width * factor)), max(1, round(req.height * factor)))
        return ImageOps.fit(image, box, Image.Resampling.LANCZOS)
    out = image.copy()
    out.thumbnail((req.width, req.height), Image.Resampling.LANCZOS)
    return out
