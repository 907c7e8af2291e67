"""Where files live. The local filesystem by default; keys are relative paths.

Keys under `public/` may be served to anyone; everything else is private."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from core.settings import Settings

# LocalStorage's temporary files (see `put`): a process killed mid-write leaves one behind.
TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class StoredFile:
    key: str
    modified: datetime  # aware, UTC


class Storage(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def path(self, key: str) -> Path | None: ...  # None: not on local disk
    def files(self, prefix: str) -> Iterator[StoredFile]: ...  # every key under prefix/
    def delete(self, key: str) -> None: ...  # no error if it is already gone


def _safe_key(key: str) -> PurePosixPath:
    path = PurePosixPath(key)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"bad storage key {key!r}")
    return path


class LocalStorage:
    """Atomic writes (temp file + rename) so a crash never leaves half a photo."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    def put(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def files(self, prefix: str) -> Iterator[StoredFile]:
        top = self.path(prefix)
        for folder, _, names in os.walk(top):
            for name in names:
                full = Path(folder) / name
                try:
                    mtime = full.stat().st_mtime
                except FileNotFoundError:  # renamed or removed since the listing
                    continue
                yield StoredFile(
                    full.relative_to(self.root).as_posix(), datetime.fromtimestamp(mtime, UTC)
                )

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)


class S3Storage:
    """S3-compatible object storage (AWS S3, MinIO, Ceph RGW). Credentials come from the
    usual AWS environment variables or instance role; `endpoint_url` points elsewhere than AWS."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        if client is None:
            import boto3  # optional dependency: pip install 'streetloop[s3]'

            client = boto3.client("s3", endpoint_url=endpoint_url or None)
        # boto3 ships no types (pyproject's mypy overrides), so its client is Any to mypy.
        self.client: Any = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _key(self, key: str) -> str:
        safe = str(_safe_key(key))
        return f"{self.prefix}/{safe}" if self.prefix else safe

    def path(self, key: str) -> None:
        return None  # not on a local disk

    def put(self, key: str, data: bytes) -> None:
        # A PUT is atomic in S3: readers see the old object or the whole new one.
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError if there is none (as for local files)."""
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                raise FileNotFoundError(key) from None
            raise

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    def files(self, prefix: str) -> Iterator[StoredFile]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix) + "/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                yield StoredFile(obj["Key"][strip:], obj["LastModified"].astimezone(UTC))

    def delete(self, key: str) -> None:
        # DELETE of a missing key succeeds in S3: nothing to special-case.
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def storage_from_settings(settings: Settings) -> Storage:
    """Local disk unless STREETLOOP_STORAGE=s3."""
    if settings.storage == "s3":
        return S3Storage(
            settings.s3_bucket, prefix=settings.s3_prefix, endpoint_url=settings.s3_endpoint_url
        )
    return LocalStorage(settings.media_dir)
