"""Photo intake helpers (geo.photos): HEIC, decompression bombs, EXIF facts, perceptual hashing."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import pytest
from PIL import Image, TiffImagePlugin

from geo.photos import (
    ExifFacts,
    PhotoLimits,
    PhotoRejected,
    exif_facts,
    hamming,
    inspect_photo,
    inspect_photos,
    perceptual_hash,
    public_copies,
    to_signed64,
)
from tests.factories.photos import encode, gps_exif, phone_jpeg, scene, zero_png

ROOT = Path(__file__).resolve().parents[2]
LIMITS = PhotoLimits(
    max_bytes=10_000_000,
    max_pixels=20_000_000,
    max_pixels_other=20_000_000,
    max_request_pixels=20_000_000,
)


# --------------------------------------------------------------------------- HEIC


def test_heic_is_accepted_and_its_public_copy_is_a_clean_jpeg() -> None:
    exif = gps_exif()
    exif[0x0112] = 6  # pillow-heif turns this into the HEIF rotation on save
    data = encode(scene(1, (160, 120)), "HEIF", quality=85, exif=exif.tobytes())
    assert data[4:12] == b"ftypheic"

    info = inspect_photo(data, LIMITS)
    assert (info.format, info.content_type, info.extension) == ("HEIF", "image/heic", "heic")
    assert (info.width, info.height) == (120, 160)  # stored rotated: portrait, as displayed

    facts = exif_facts(data)
    assert facts.make == "Apple" and facts.lat == pytest.approx(42.508056, abs=1e-6)

    full, thumb = public_copies(data)
    for out in (full, thumb):
        assert out[:3] == b"\xff\xd8\xff"
        with Image.open(io.BytesIO(out)) as img:
            assert img.format == "JPEG"
            assert len(img.getexif()) == 0 and "exif" not in img.info
    with Image.open(io.BytesIO(full)) as img:
        assert img.size == (120, 160)
    assert exif_facts(full) == ExifFacts()


def test_a_heic_bomb_is_refused_before_decoding() -> None:
    data = encode(scene(2, (64, 64)), "HEIF", quality=80)
    # More pixels than allowed: 413-style, decided from the header.
    with pytest.raises(PhotoRejected) as exc:
        inspect_photo(data, PhotoLimits(max_bytes=10_000_000, max_pixels=64 * 64 - 1))
    assert exc.value.too_large
    # A tiny file claiming 30000x30000 in its 'ispe' box: refused from the header alone.
    bomb = bytearray(data)
    at = bomb.find(b"ispe")
    assert at > 0
    while at != -1:
        struct.pack_into(">II", bomb, at + 8, 30_000, 30_000)
        at = bomb.find(b"ispe", at + 4)
    with pytest.raises(PhotoRejected) as exc:
        inspect_photo(
            bytes(bomb),
            PhotoLimits(max_bytes=10_000_000, max_pixels=10**12, max_request_pixels=10**12),
        )
    assert exc.value.too_large
    # And a truncated HEIC is a 422-style rejection, not a crash.
    with pytest.raises(PhotoRejected) as exc:
        inspect_photo(data[: len(data) // 2], LIMITS)
    assert not exc.value.too_large


def test_a_heic_of_nothing_above_the_lower_cap_is_refused_from_its_size() -> None:
    # HEIC cannot be decoded at a reduced scale, so the camera cap alone lets through a
    # 49 MP black HEIC of 12 kB, which costs a full decode (+340 MB) twice. A photo that
    # large compresses to far more: above the lower cap a HEIC must carry at least
    # MIN_HEIC_BYTES_PER_PIXEL. Scaled down here (the lower cap at 1 MP).
    limits = PhotoLimits(
        max_bytes=10_000_000,
        max_pixels=20_000_000,
        max_pixels_other=1_000_000,
        max_request_pixels=20_000_000,
    )
    empty = encode(Image.new("RGB", (2000, 1500)), "HEIF", quality=80)
    assert len(empty) < 10_000  # 3 MP in a few kB: nothing but a bomb looks like this
    with pytest.raises(PhotoRejected, match="too few bytes for its") as exc:
        inspect_photo(empty, limits)
    assert exc.value.too_large
    # A real photo of the same size passes, and so does an empty one under the lower cap.
    photo = encode(scene(13, (2000, 1500)), "HEIF", quality=80)
    assert inspect_photo(photo, limits).format == "HEIF"
    assert (
        inspect_photo(encode(Image.new("RGB", (1000, 750)), "HEIF", quality=80), limits).format
        == "HEIF"
    )


# --------------------------------------------------------------------------- decompression bombs


_PEAK_CHILD = """
import sys, pathlib
from geo import photos

def high_water():  # VmHWM: this process's peak resident memory, in bytes
    line = next(l for l in pathlib.Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024

data = pathlib.Path(sys.argv[2]).read_bytes()
before = high_water()
if sys.argv[1] == "intake":
    photos.inspect_photo(data, photos.PhotoLimits())
    photos.perceptual_hash(data)
else:
    photos.public_copies(data)
print(high_water() - before)
"""


def peak_growth(stage: str, data: bytes, tmp_path: Path) -> int:
    """How far `stage` raises the peak memory of a fresh process (so nothing else counts)."""
    path = tmp_path / "photo"
    path.write_bytes(data)
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_CHILD, stage, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


def test_a_png_bomb_under_the_camera_cap_is_refused_from_its_header() -> None:
    data = zero_png(7000, 7000)
    assert len(data) < 150_000  # 49 MP: under the 50 MP a phone photo may have
    with pytest.raises(
        PhotoRejected, match="7000x7000 pixels; the limit is 16,000,000 pixels for PNG"
    ) as exc:
        inspect_photo(data, PhotoLimits())
    assert exc.value.too_large
    # Decided from the header: the same header with its pixel data cut off is refused the
    # same way (too many pixels), not as a broken file, so nothing was decoded.
    with pytest.raises(PhotoRejected, match="limit is 16,000,000") as exc:
        inspect_photo(data[:200], PhotoLimits())
    assert exc.value.too_large
    # A PNG of a sane size still passes.
    assert inspect_photo(zero_png(4000, 3000), PhotoLimits()).format == "PNG"


def test_a_48_megapixel_phone_jpeg_is_accepted_and_its_public_copy_is_clean() -> None:
    data = phone_jpeg()
    assert len(data) < PhotoLimits().max_bytes
    info = inspect_photo(data, PhotoLimits())
    assert (info.format, info.width, info.height) == ("JPEG", 8000, 6000)
    # The proof checks read the original's EXIF.
    facts = exif_facts(data)
    assert facts.make == "Apple" and facts.lat == pytest.approx(42.508056, abs=1e-6)
    full, thumb = public_copies(data)
    with Image.open(io.BytesIO(full)) as img:
        assert img.size == (1536, 2048)  # portrait, as the phone showed it
        assert len(img.getexif()) == 0 and "exif" not in img.info
    with Image.open(io.BytesIO(thumb)) as img:
        assert img.size == (240, 320) and len(img.getexif()) == 0
    assert exif_facts(full) == ExifFacts() and exif_facts(thumb) == ExifFacts()


def test_a_phone_jpeg_with_a_second_picture_is_a_jpeg() -> None:
    # Android's Ultra HDR and the iPhone's HDR photos carry a gain map as a second picture
    # (the Multi-Picture Format); Pillow names such a file MPO. It is a JPEG all the same:
    # its EXIF is the proof's, and only the first picture goes public.
    first = scene(12, (640, 480))
    buf = io.BytesIO()
    first.save(
        buf, "MPO", save_all=True, append_images=[Image.new("L", (160, 120), 200)], exif=gps_exif()
    )
    data = buf.getvalue()
    info = inspect_photo(data, LIMITS)
    assert (info.format, info.content_type, info.extension) == ("JPEG", "image/jpeg", "jpg")
    assert (info.width, info.height) == (640, 480)
    assert exif_facts(data).lat == pytest.approx(42.508056, abs=1e-6)
    full, _ = public_copies(data)
    with Image.open(io.BytesIO(full)) as img:
        assert (img.format, img.size) == ("JPEG", (640, 480)) and len(img.getexif()) == 0
        assert getattr(img, "n_frames", 1) == 1
    assert hamming(perceptual_hash(data), perceptual_hash(encode(first, quality=95))) <= 4


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from Linux's /proc")
def test_a_jpeg_is_never_decoded_at_full_size(tmp_path: Path) -> None:
    data = phone_jpeg()
    frame = 8000 * 6000 * 4  # one decoded 48 MP frame (Pillow keeps RGB as 4 bytes a pixel)
    # Intake decodes at 1/8 scale and the public copy at 1/2 (4000x3000, still over 2048 a
    # side), so neither ever holds a full-size frame. (Measured when decoding at full
    # size: +194 MB and +578 MB; now about +5 MB and +87 MB.)
    assert peak_growth("intake", data, tmp_path) < frame / 4
    assert peak_growth("public", data, tmp_path) < frame


def test_a_truncated_jpeg_is_still_refused() -> None:
    data = encode(scene(8, (640, 480)), quality=90)
    with pytest.raises(PhotoRejected, match="not a readable image") as exc:
        inspect_photo(data[: len(data) * 2 // 3], LIMITS)
    assert not exc.value.too_large


def test_the_photos_of_one_request_are_bounded_together_before_any_is_decoded() -> None:
    good = encode(scene(9, (640, 480)))
    broken = good[: len(good) // 2]
    limits = PhotoLimits(max_request_pixels=2 * 640 * 480)
    assert len(inspect_photos([good, good], limits)) == 2
    with pytest.raises(PhotoRejected, match="the 3 photos have 921,600 pixels together") as exc:
        inspect_photos([good, good, broken], limits)
    assert exc.value.too_large  # the total, not the broken third: it was never decoded
    with pytest.raises(PhotoRejected, match="not a readable image"):
        inspect_photos([good, broken], limits)


# --------------------------------------------------------------------------- EXIF


def test_exif_gps_and_time_are_read_from_a_jpeg() -> None:
    # 42°30'29" N = 42 + 30/60 + 29/3600 = 42.508056; 71°03'36" W = -(71 + 3/60 + 36/3600) = -71.06
    data = encode(scene(3, (64, 48)), exif=gps_exif())
    facts = exif_facts(data)
    assert facts.lat == pytest.approx(42.508056, abs=1e-6)
    assert facts.lon == pytest.approx(-71.06, abs=1e-9)
    assert facts.taken_at == datetime(2026, 3, 14, 9, 5, 7, tzinfo=timezone(timedelta(hours=-4)))
    assert facts.gps_at == datetime(2026, 3, 14, 13, 5, 9, tzinfo=UTC)
    assert (facts.make, facts.model) == ("Apple", "iPhone 15")
    assert facts.has_location


def test_exif_southern_hemisphere_and_naive_time_without_offset() -> None:
    exif = gps_exif(lat_ref="S", lat=(33.0, 52.0, 4.8), lon_ref="E", lon=(151.0, 12.0, 36.0))
    del exif.get_ifd(0x8769)[0x9011]
    facts = exif_facts(encode(scene(4, (64, 48)), exif=exif))
    assert facts.lat == pytest.approx(-(33 + 52 / 60 + 4.8 / 3600), abs=1e-9)  # -33.868
    assert facts.lon == pytest.approx(151.21, abs=1e-9)
    assert facts.taken_at == datetime(2026, 3, 14, 9, 5, 7)  # naive: the camera's local clock
    assert facts.taken_at.tzinfo is None


def test_no_exif_and_stripped_exif_give_no_facts() -> None:
    assert exif_facts(encode(scene(5, (64, 48)))) == ExifFacts()
    assert exif_facts(encode(scene(5, (64, 48)), "PNG")) == ExifFacts()
    assert not ExifFacts().has_location


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all",
        b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff",  # truncated EXIF
        b"\xff\xd8\xff\xe1\xff\xffExif\x00\x00II*\x00\xff\xff\xff\x7f"
        + b"\x00" * 40,  # offsets off the end
    ],
)
def test_garbage_never_raises(data: bytes) -> None:
    assert exif_facts(data) == ExifFacts()


def test_garbage_tags_cost_only_themselves() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Maker"
    gps = exif.get_ifd(0x8825)
    # Minutes of 75, a zero denominator and a missing ref: no position, and no exception.
    gps[1], gps[2] = "N", (42.0, 75.0, 0.0)
    gps[3], gps[4] = "E", (TiffImagePlugin.IFDRational(1, 0), 0.0, 0.0)
    exif.get_ifd(0x8769)[0x9003] = "0000:00:00 00:00:00"
    facts = exif_facts(encode(scene(6, (32, 32)), exif=exif))
    assert facts == ExifFacts(make="Maker")

    missing_ref = Image.Exif()
    gps = missing_ref.get_ifd(0x8825)
    gps[2], gps[3], gps[4] = (42.0, 30.0, 0.0), "E", (1.0, 30.0, 0.0)
    assert exif_facts(encode(scene(6, (32, 32)), exif=missing_ref)).lat is None

    null_island = gps_exif(lat=(0.0, 0.0, 0.0), lon=(0.0, 0.0, 0.0))
    assert not exif_facts(encode(scene(6, (32, 32)), exif=null_island)).has_location


def test_rational_gps_values_as_fractions() -> None:
    exif = gps_exif(lat=(Fraction(42), Fraction(30), Fraction(2900, 100)))
    assert exif_facts(encode(scene(7, (32, 32)), exif=exif)).lat == pytest.approx(
        42.508056, abs=1e-6
    )


# --------------------------------------------------------------------------- perceptual hash


@pytest.mark.parametrize("seed", range(6))
def test_phash_survives_recompression_and_resizing(seed: int) -> None:
    img = scene(seed)
    original = perceptual_hash(encode(img, quality=92))
    assert 0 <= original < 2**64
    variants = [
        encode(img, quality=35),
        encode(img.resize((320, 240), Image.Resampling.BILINEAR), quality=75),
        encode(img.resize((1280, 960), Image.Resampling.BICUBIC), quality=85),
        encode(img, "PNG"),
        encode(img, "HEIF", quality=60),
    ]
    for variant in variants:
        assert hamming(original, perceptual_hash(variant)) <= 6


def test_phash_applies_orientation_first() -> None:
    img = scene(11)
    upright = perceptual_hash(encode(img))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": store the pixels rotated the other way
    sideways = encode(img.transpose(Image.Transpose.ROTATE_90), exif=exif)
    assert hamming(upright, perceptual_hash(sideways)) <= 6
    assert hamming(upright, perceptual_hash(encode(img.transpose(Image.Transpose.ROTATE_90)))) >= 16


def test_different_photos_hash_far_apart() -> None:
    hashes = [perceptual_hash(encode(scene(seed))) for seed in range(12)]
    distances = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    assert min(distances) >= 16


def test_phash_of_garbage_is_a_rejection() -> None:
    with pytest.raises(PhotoRejected):
        perceptual_hash(b"not an image")


def test_hamming_and_signed_storage() -> None:
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(0, 2**64 - 1) == 64
    h = 0xF0F0_0000_0000_0001
    assert to_signed64(h) < 0 and to_signed64(5) == 5
    # A hash round-tripped through a signed BIGINT compares exactly as the unsigned one.
    assert hamming(to_signed64(h), h) == 0
    assert hamming(to_signed64(h), 1) == hamming(h, 1) == 8


def test_a_process_decodes_one_large_heic_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A padded HEIC of nothing passes the bytes rule and costs a full decode: each
    decode of a HEIC above LARGE_DECODE_PIXELS holds the process's one slot (scaled
    down here), and every decode of one goes through it; a JPEG never does."""
    import threading

    import geo.photos as photos

    monkeypatch.setattr(photos, "LARGE_DECODE_PIXELS", 1_000_000)
    holders, most, lock = [0], [0], threading.Lock()

    class Watched:
        def __init__(self) -> None:
            self.real, self.used = threading.BoundedSemaphore(1), 0

        def __enter__(self) -> None:
            self.real.acquire()
            with lock:
                self.used += 1
                holders[0] += 1
                most[0] = max(most[0], holders[0])

        def __exit__(self, *exc: object) -> None:
            with lock:
                holders[0] -= 1
            self.real.release()

    slot = Watched()
    monkeypatch.setattr(photos, "_LARGE_DECODES", slot)
    large = encode(scene(14, (1600, 1200)), "HEIF", quality=60)
    limits = PhotoLimits(
        max_bytes=10_000_000,
        max_pixels=20_000_000,
        max_pixels_other=20_000_000,
        max_request_pixels=50_000_000,
    )
    workers = [
        threading.Thread(
            target=lambda: (
                inspect_photo(large, limits),
                public_copies(large),
                perceptual_hash(large),
            )
        )
        for _ in range(3)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert slot.used == 9 and most[0] == 1  # three decodes each, never two at once
    jpeg = encode(scene(15, (1600, 1200)))
    inspect_photo(jpeg, limits), public_copies(jpeg), perceptual_hash(jpeg)
    small = encode(scene(16, (640, 480)), "HEIF", quality=60)
    inspect_photo(small, limits), public_copies(small), perceptual_hash(small)
    assert slot.used == 9
