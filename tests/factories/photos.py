"""Synthetic photos for the tests: photo-like pictures with the EXIF a phone writes,
decompression bombs, and processed photo rows whose files exist."""

from __future__ import annotations

import functools
import hashlib
import io
import struct
import zlib
from datetime import UTC, datetime

import numpy as np
from PIL import Image, ImageDraw
from sqlalchemy.orm import Session

from core.models import Photo
from core.storage import Storage


def scene(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A photo-like picture: a tilted gradient, sensor noise and a dozen random shapes."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    tilt = rng.uniform(-1, 1, 2)
    base = (x * tilt[0] + y * tilt[1]) / max(w, h) * 120 + 120
    arr = np.stack([base + rng.uniform(-40, 40) for _ in range(3)], axis=-1) + rng.normal(
        0, 12, (h, w, 3)
    )
    img = Image.fromarray(np.clip(arr, 0, 255).astype("uint8"))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = (x0, y0, x0 + int(rng.integers(30, 250)), y0 + int(rng.integers(30, 250)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return img


def encode(img: Image.Image, fmt: str = "JPEG", **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def gps_exif(
    lat_ref: str = "N",
    lat: tuple = (42.0, 30.0, 29.0),
    lon_ref: str = "W",
    lon: tuple = (71.0, 3.0, 36.0),
) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Apple"
    exif[0x0110] = "iPhone 15"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = lat_ref, lat, lon_ref, lon
    gps[29] = "2026:03:14"
    gps[7] = (13.0, 5.0, 9.0)
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = "2026:03:14 09:05:07"
    sub[0x9011] = "-04:00"
    return exif


def zero_png(width: int, height: int) -> bytes:
    """An RGB PNG of zeros (7000x7000: 143 kB), compressed row by row: never held decoded."""
    row = b"\0" * (1 + 3 * width)  # filter byte + pixels
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@functools.cache
def phone_jpeg(width: int = 8000, height: int = 6000) -> bytes:
    """A 48 MP phone photo (~10 MB, under the 15 MB upload cap): coarse noise blown up,
    with the phone's GPS and an orientation of 6 (shot in portrait)."""
    rng = np.random.default_rng(48)
    small = rng.integers(0, 256, (height // 10, width // 10, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)
    exif = gps_exif()
    exif[0x0112] = 6
    return encode(img, quality=85, exif=exif)


def _dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    return float(d), float(m), round((value - d - m / 60) * 3600, 4)


def photo(
    seed: int,
    *,
    lat: float | None = None,
    lon: float | None = None,
    taken: datetime | None = None,
    fmt: str = "JPEG",
) -> bytes:
    exif = Image.Exif()
    if lat is not None:
        gps = exif.get_ifd(0x8825)
        gps[1], gps[2], gps[3], gps[4] = (
            ("N" if lat >= 0 else "S"),
            _dms(lat),
            ("E" if lon >= 0 else "W"),
            _dms(lon),
        )
    if taken is not None:
        sub = exif.get_ifd(0x8769)
        sub[0x9003] = taken.astimezone(UTC).strftime("%Y:%m:%d %H:%M:%S")
        sub[0x9011] = "+00:00"
    return encode(scene(seed), fmt, exif=exif) if fmt == "JPEG" else encode(scene(seed), fmt)


def jpeg_with_exif(size: tuple[int, int] = (64, 32), orientation: int = 6) -> bytes:
    img = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = orientation  # rotate 90° on display
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0131] = "secret-app 1.0"  # Software
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (42.0, 30.0, 29.0), "E", (1.0, 31.0, 27.0)
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def jpeg(colour: str | tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    """A plain picture of one colour: different colours are different photos."""
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    return buf.getvalue()


def original_key(data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    return f"private/photos/{sha[:2]}/{sha}.jpg"


def named_photo(db: Session, storage: Storage, colour: str) -> Photo:
    """A processed photo whose three files exist and are named by its row."""
    data = jpeg(colour, (8, 8))
    sha = hashlib.sha256(data).hexdigest()
    photo = Photo(
        kind="report",
        state="ready",
        sha256=sha,
        content_type="image/jpeg",
        byte_size=len(data),
        width=8,
        height=8,
        original_key=original_key(data),
    )
    db.add(photo)
    db.flush()
    photo.public_key = f"public/photos/{photo.id}-{sha[:16]}.jpg"
    photo.thumbnail_key = f"public/photos/{photo.id}-{sha[:16]}-thumb.jpg"
    db.flush()
    for key in (photo.original_key, photo.public_key, photo.thumbnail_key):
        storage.put(key, data)
    return photo
