"""Photo intake and derivatives: content sniffing, bomb-safe limits, EXIF-free public copies."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
PUBLIC_MAX_SIDE = 2048
THUMBNAIL_SIDE = 320


class PhotoRejected(ValueError):
    """The upload is not an acceptable image; `too_large` separates 413 from 422."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


@dataclass(frozen=True)
class InspectedPhoto:
    sha256: str
    format: str
    content_type: str
    extension: str
    width: int
    height: int
    byte_size: int


def inspect_photo(data: bytes, *, max_bytes: int, max_pixels: int) -> InspectedPhoto:
    """Identify the image from its bytes (never its name) and check it is safe to decode."""
    if len(data) == 0:
        raise PhotoRejected("the uploaded file is empty")
    if len(data) > max_bytes:
        raise PhotoRejected(f"the photo is {len(data)} bytes; the limit is {max_bytes}", too_large=True)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice that; we refuse outright.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        with img:
            fmt = img.format or ""
            width, height = img.size
            if fmt not in ACCEPTED_FORMATS:
                raise PhotoRejected(f"unsupported image type {fmt or 'unknown'}; send JPEG, PNG or WebP")
            # Check the header's claimed size before decoding a single pixel: a tiny
            # file can claim gigapixels (a decompression bomb).
            if width * height > max_pixels:
                raise PhotoRejected(
                    f"the photo is {width}x{height} pixels; the limit is {max_pixels} pixels", too_large=True
                )
            img.verify()
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # truncated or corrupt data fails here, not in a worker later
    except PhotoRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoRejected(f"the photo has too many pixels: {exc}", too_large=True) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PhotoRejected(f"the file is not a readable image ({type(exc).__name__})") from None
    return InspectedPhoto(
        sha256=hashlib.sha256(data).hexdigest(),
        format=fmt,
        content_type=ACCEPTED_FORMATS[fmt],
        extension=EXTENSIONS[fmt],
        width=width,
        height=height,
        byte_size=len(data),
    )


def public_copies(data: bytes) -> tuple[bytes, bytes]:
    """A JPEG without any metadata, orientation applied, and its thumbnail."""
    with warnings.catch_warnings():
        # Pillow warns on odd EXIF; the copy drops EXIF anyway.
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data)) as img:
            img = ImageOps.exif_transpose(img)
            img = img.convert("RGB")
            img.thumbnail((PUBLIC_MAX_SIDE, PUBLIC_MAX_SIDE))
            # A fresh image carries pixels only: no EXIF, XMP, ICC-embedded GPS or comments.
            clean = Image.new("RGB", img.size)
            clean.paste(img)
            full = io.BytesIO()
            clean.save(full, "JPEG", quality=85, optimize=True)
            clean.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            thumb = io.BytesIO()
            clean.save(thumb, "JPEG", quality=80, optimize=True)
    return full.getvalue(), thumb.getvalue()
