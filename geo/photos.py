"""Photo intake and derivatives: content sniffing, bomb-safe limits, EXIF-free public copies.

Also the facts proof-of-work checks need from a photo: its EXIF GPS/time (`exif_facts`)
and a perceptual hash to spot a reused picture (`perceptual_hash`, `hamming`).
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from core.settings import Settings

# iPhones shoot HEIC by default. Registered once, here, so every Image.open in the
# process understands it; the thumbnails/depth maps/aux images inside a HEIC are
# never used, so pillow-heif is told not to parse them (less work, less attack surface).
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

ACCEPTED_FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "HEIF": "image/heic",
}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "HEIF": "heic"}
# What phone cameras write. A camera photo's pixels are real detail, so its file grows
# with them; a PNG or WebP of flat colour compresses ~1000:1 (143 kB for 49 MP of zeros),
# which is what a decompression bomb is. Those formats get the lower cap.
CAMERA_FORMATS = frozenset({"JPEG", "HEIF"})
# A JPEG that carries a second picture (the Multi-Picture Format: Android's Ultra HDR and
# the iPhone's HDR gain maps, stereo cameras) is what Pillow calls MPO. It is a JPEG to
# every reader, decodes its first picture (the photo), and is treated as one.
_FORMAT_ALIASES = {"MPO": "JPEG"}
# libheif decodes a HEIC only at full size, so the camera cap alone would let a 49 MP
# HEIC of nothing (12 kB of black) cost a full decode, twice. Above the lower cap a HEIC
# must carry at least this many bytes per pixel: phone photos carry 0.05-0.9 (a 48 MP
# one several MB), an image of nothing under 0.001. (JPEG needs no such rule: it is
# decoded at 1/8 or 1/2 scale.)
MIN_HEIC_BYTES_PER_PIXEL = 0.005
# ... and as a padded file passes that rule, a process decodes at most one such HEIC (a
# full-size decode above this many pixels: about 340 MB at 48 MP) at a time: four at once
# are what took a web process from 224 to 713 MB.
LARGE_DECODE_PIXELS = 16_000_000
_LARGE_DECODES = threading.BoundedSemaphore(1)


@contextmanager
def _one_large_decode_at_a_time(img: Image.Image) -> Iterator[None]:
    """Held around the decode of a HEIC above LARGE_DECODE_PIXELS (JPEG decodes reduced)."""
    if img.format != "HEIF" or img.size[0] * img.size[1] <= LARGE_DECODE_PIXELS:
        yield
        return
    with _LARGE_DECODES:
        yield


PUBLIC_MAX_SIDE = 2048
THUMBNAIL_SIDE = 320


class PhotoRejected(ValueError):
    """The upload is not an acceptable image; `too_large` separates 413 from 422."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


@dataclass(frozen=True)
class PhotoLimits:
    """What one request may make us decode (see the settings of the same names)."""

    max_bytes: int = Settings.max_upload_bytes
    # Per photo, from its header: JPEG and HEIC (CAMERA_FORMATS); every other format.
    max_pixels: int = Settings.max_image_pixels
    max_pixels_other: int = Settings.max_image_pixels_other
    # All the photos of one request together (a completion carries up to ten).
    max_request_pixels: int = Settings.max_request_pixels

    @classmethod
    def from_settings(cls, settings: Settings) -> PhotoLimits:
        return cls(
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_image_pixels,
            max_pixels_other=settings.max_image_pixels_other,
            max_request_pixels=settings.max_request_pixels,
        )

    def pixel_cap(self, fmt: str) -> int:
        return self.max_pixels if fmt in CAMERA_FORMATS else self.max_pixels_other


@dataclass(frozen=True)
class InspectedPhoto:
    sha256: str
    format: str
    content_type: str
    extension: str
    width: int
    height: int
    byte_size: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def inspect_photo(data: bytes, limits: PhotoLimits) -> InspectedPhoto:
    """Identify the image from its bytes (never its name) and check it is safe to decode."""
    return inspect_photos([data], limits)[0]


def inspect_photos(blobs: list[bytes], limits: PhotoLimits) -> list[InspectedPhoto]:
    """`inspect_photo` for all the photos of one request: every header and the request's
    total pixels are checked before a single pixel of any of them is decoded."""
    found = [_read_header(data, limits) for data in blobs]
    total = sum(p.pixels for p in found)
    if total > limits.max_request_pixels:
        raise PhotoRejected(
            f"the {len(found)} photos have {total:,} pixels together; the limit per request is "
            f"{limits.max_request_pixels:,}",
            too_large=True,
        )
    for data in blobs:
        _check_decodes(data)
    return found


def _read_header(data: bytes, limits: PhotoLimits) -> InspectedPhoto:
    """Format and size from the header alone; refuses what is too large to decode."""
    if len(data) == 0:
        raise PhotoRejected("the uploaded file is empty")
    if len(data) > limits.max_bytes:
        raise PhotoRejected(
            f"the photo is {len(data)} bytes; the limit is {limits.max_bytes}", too_large=True
        )
    with _decoding_errors():
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice that; we refuse outright.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # parses the header; no pixel is decoded
        with img:
            fmt = _FORMAT_ALIASES.get(img.format or "", img.format or "")
            width, height = img.size
            if fmt not in ACCEPTED_FORMATS:
                raise PhotoRejected(
                    f"unsupported image type {fmt or 'unknown'}; send JPEG, PNG, WebP or HEIC"
                )
            # Check the header's claimed size before decoding a single pixel: a tiny
            # file can claim gigapixels (a decompression bomb).
            cap = limits.pixel_cap(fmt)
            if width * height > cap:
                kind = (
                    ""
                    if fmt in CAMERA_FORMATS
                    else f" for {fmt} (JPEG and HEIC may have {limits.max_pixels:,})"
                )
                raise PhotoRejected(
                    f"the photo is {width}x{height} pixels; the limit is {cap:,} pixels{kind}",
                    too_large=True,
                )
            if (
                fmt == "HEIF"
                and width * height > limits.max_pixels_other
                and len(data) < MIN_HEIC_BYTES_PER_PIXEL * width * height
            ):
                raise PhotoRejected(
                    f"the HEIC claims {width}x{height} pixels in {len(data):,} bytes: too few bytes for its "
                    f"size to be a photo; above {limits.max_pixels_other:,} pixels a HEIC needs "
                    f"{MIN_HEIC_BYTES_PER_PIXEL} bytes a pixel",
                    too_large=True,
                )
            img.verify()
    return InspectedPhoto(
        sha256=hashlib.sha256(data).hexdigest(),
        format=fmt,
        content_type=ACCEPTED_FORMATS[fmt],
        extension=EXTENSIONS[fmt],
        width=width,
        height=height,
        byte_size=len(data),
    )


def _check_decodes(data: bytes) -> None:
    """Decode the whole file once, so truncated or corrupt data fails here and not in a
    worker later. A JPEG decodes at 1/8 scale: every byte of it is still read and
    entropy-decoded (which is what finds the damage), but 48 MP take 0.75 MP of memory."""
    with _decoding_errors(), Image.open(io.BytesIO(data)) as img:
        img.draft(None, (1, 1))  # a no-op for formats other than JPEG
        with _one_large_decode_at_a_time(img):
            img.load()


@contextmanager
def _decoding_errors() -> Iterator[None]:
    """Whatever Pillow or libheif raise on a bad file, as a PhotoRejected."""
    try:
        yield
    except PhotoRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoRejected(f"the photo has too many pixels: {exc}", too_large=True) from None
    except MemoryError:
        # pillow-heif maps libheif's security limits (and allocation failures) to MemoryError.
        raise PhotoRejected("the photo is too large to decode", too_large=True) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, RuntimeError) as exc:
        # RuntimeError: libheif's catch-all, e.g. a HEIF holding a codec we cannot decode.
        raise PhotoRejected(f"the file is not a readable image ({type(exc).__name__})") from None


def public_copies(data: bytes) -> tuple[bytes, bytes]:
    """A JPEG without any metadata, orientation applied, and its thumbnail (HEIC in, JPEG out).

    Decoding is the cost, so it is done once and as small as it may be: a JPEG at the
    smallest scale (1/2, 1/4, 1/8) still at least PUBLIC_MAX_SIDE on each side (a 48 MP
    photo decodes as 12 MP), and everything after it works on the reduced copy in place.
    """
    with warnings.catch_warnings():
        # Pillow warns on odd EXIF; the copy drops EXIF anyway.
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data)) as img:
            img.draft(
                "RGB", (PUBLIC_MAX_SIDE, PUBLIC_MAX_SIDE)
            )  # a no-op for formats other than JPEG
            with _one_large_decode_at_a_time(img):
                img.load()
            picture: Image.Image = img
            if img.mode not in _RESIZES_WELL:
                # Palette and 1-bit images would be shrunk by picking pixels: colour first.
                picture = img.convert("RGB")
            # The box is square, so shrinking before turning upright gives the same picture;
            # the EXIF orientation stays in `info`, which the in-place resize keeps.
            picture.thumbnail((PUBLIC_MAX_SIDE, PUBLIC_MAX_SIDE))
            ImageOps.exif_transpose(picture, in_place=True)
            # A fresh image carries pixels only: no EXIF, XMP, ICC-embedded GPS or comments.
            clean = Image.new("RGB", picture.size)
            clean.paste(picture if picture.mode == "RGB" else picture.convert("RGB"))
        full = io.BytesIO()
        clean.save(full, "JPEG", quality=85, optimize=True)
        clean.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        thumb = io.BytesIO()
        clean.save(thumb, "JPEG", quality=80, optimize=True)
    return full.getvalue(), thumb.getvalue()


# Modes Pillow resizes by filtering (the others by nearest pixel).
_RESIZES_WELL = frozenset({"RGB", "RGBA", "L", "LA", "CMYK", "YCbCr"})


# --------------------------------------------------------------------------- EXIF facts

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_MAKE, _MODEL = 0x010F, 0x0110
_DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL = 0x9003, 0x9011
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4
_GPS_TIME, _GPS_DATE = 7, 29
_OFFSET_RE = re.compile(r"^([+-])(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class ExifFacts:
    """What a photo's EXIF claims about where and when it was taken; None = absent or unreadable.

    `taken_at` is aware when the camera wrote OffsetTimeOriginal, else naive camera-local
    time. `gps_at` is the GPS receiver's UTC timestamp, when present.
    """

    lat: float | None = None
    lon: float | None = None
    taken_at: datetime | None = None
    make: str | None = None
    model: str | None = None
    gps_at: datetime | None = None

    @property
    def has_location(self) -> bool:
        return self.lat is not None and self.lon is not None


def exif_facts(data: bytes) -> ExifFacts:
    """Location, capture time, make and model from a photo's EXIF; never raises on bad data."""
    try:
        with warnings.catch_warnings():
            # Only metadata is read here, no pixels: Pillow's EXIF/bomb warnings don't apply.
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                exif = img.getexif()
                ifd0 = dict(exif)
                sub = dict(exif.get_ifd(_EXIF_IFD))
                gps = dict(exif.get_ifd(_GPS_IFD))
    except Exception:  # noqa: BLE001 - EXIF parsers raise anything on garbage; facts are optional
        return ExifFacts()
    lat = _safe(_coordinate, gps.get(_GPS_LAT), gps.get(_GPS_LAT_REF), "N", "S", 90.0)
    lon = _safe(_coordinate, gps.get(_GPS_LON), gps.get(_GPS_LON_REF), "E", "W", 180.0)
    if lat is None or lon is None or (lat == 0.0 and lon == 0.0):
        # Half a position is no position; 0,0 ("Null Island") is what apps write without a fix.
        lat = lon = None
    # Some writers put DateTimeOriginal in IFD0 instead of the Exif sub-IFD.
    original = sub.get(_DATETIME_ORIGINAL, ifd0.get(_DATETIME_ORIGINAL))
    offset = sub.get(_OFFSET_TIME_ORIGINAL, ifd0.get(_OFFSET_TIME_ORIGINAL))
    return ExifFacts(
        lat=lat,
        lon=lon,
        taken_at=_safe(_exif_datetime, original, offset),
        make=_safe(_text, ifd0.get(_MAKE)),
        model=_safe(_text, ifd0.get(_MODEL)),
        gps_at=_safe(_gps_datetime, gps.get(_GPS_DATE), gps.get(_GPS_TIME)),
    )


def _safe(fn: Any, *args: Any) -> Any:  # noqa: ANN401
    """Each fact is parsed on its own: one garbage tag must not cost the others."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - see exif_facts
        return None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    cleaned = "".join(ch for ch in value if ch.isprintable()).strip()
    return cleaned[:64] or None


def _rationals(value: object) -> list[float]:
    items = value if isinstance(value, (tuple, list)) else (value,)
    out = [float(x) for x in items]  # IFDRational with a zero denominator becomes nan
    if not out or not all(math.isfinite(x) and x >= 0 for x in out):
        raise ValueError("bad rational")
    return out


def _coordinate(value: object, ref: object, pos: str, neg: str, bound: float) -> float | None:
    """Degrees/minutes/seconds rationals plus an N/S or E/W ref to signed decimal degrees."""
    if value is None:
        return None
    ref_text = _text(ref)
    if ref_text is None or ref_text.upper()[:1] not in (pos, neg):
        return None  # without the ref the sign is a guess, and a wrong sign is a false alarm
    parts = _rationals(value)
    degrees, minutes, seconds = (parts + [0.0, 0.0])[:3]
    if len(parts) > 3 or minutes >= 60 or seconds >= 60:
        return None
    result = degrees + minutes / 60 + seconds / 3600
    if result > bound:
        return None
    return -result if ref_text.upper()[0] == neg else result


def _exif_datetime(value: object, offset: object) -> datetime | None:
    text = _text(value)
    if text is None:
        return None
    taken = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")  # "0000:00:00 ..." raises
    match = _OFFSET_RE.match(_text(offset) or "")
    if match:
        sign = -1 if match.group(1) == "-" else 1
        delta = timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
        if delta <= timedelta(hours=14):
            taken = taken.replace(tzinfo=timezone(sign * delta))
    return taken


def _gps_datetime(date: object, time: object) -> datetime | None:
    text = _text(date)
    if text is None or time is None:
        return None
    day = datetime.strptime(text[:10], "%Y:%m:%d")
    hours, minutes, seconds = (_rationals(time) + [0.0, 0.0])[:3]
    if hours >= 24 or minutes >= 60 or seconds >= 61:
        return None
    return day.replace(tzinfo=UTC) + timedelta(hours=hours, minutes=minutes, seconds=seconds)


# --------------------------------------------------------------------------- perceptual hash

_HASH_SIDE = 32  # pHash: DCT of a 32x32 grey image, keep the 8x8 lowest frequencies
_LOW = 8
_MASK64 = (1 << 64) - 1


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    return np.cos(np.pi * (2 * x + 1) * k / (2 * n))


_DCT = _dct_matrix(_HASH_SIDE)


def perceptual_hash(data: bytes) -> int:
    """64-bit pHash (unsigned) of the photo as displayed; near-identical pictures hash close.

    Low DCT frequencies survive re-compression, resizing and small colour shifts, which
    is exactly what re-uploading an old photo does to it. Call after `inspect_photo`
    (this decodes pixels); raises PhotoRejected if the data cannot be decoded.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # odd EXIF is irrelevant to the pixels
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                # JPEG can decode at 1/2..1/8 scale for free; 32x32 needs nowhere near 12 MP.
                img.draft("L", (4 * _HASH_SIDE, 4 * _HASH_SIDE))
                with _one_large_decode_at_a_time(img):
                    img.load()
                # Orientation first: the same scene shot portrait must not hash as a new one.
                gray = ImageOps.exif_transpose(img).convert("L")
                small = gray.resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.LANCZOS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError) as exc:
        raise PhotoRejected(f"the photo has too many pixels: {exc}", too_large=True) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, RuntimeError) as exc:
        raise PhotoRejected(f"the file is not a readable image ({type(exc).__name__})") from None
    pixels = np.asarray(small, dtype=np.float64)
    low = (_DCT @ pixels @ _DCT.T)[:_LOW, :_LOW].ravel()
    # Compare to the median of the AC terms: the DC term (mean brightness) would skew it.
    bits = low > np.median(low[1:])
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def hamming(a: int, b: int) -> int:
    """Differing bits of two 64-bit hashes; works for unsigned or BIGINT (signed) storage."""
    return ((a ^ b) & _MASK64).bit_count()


def to_signed64(value: int) -> int:
    """An unsigned 64-bit hash as a Postgres BIGINT (two's complement)."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value
