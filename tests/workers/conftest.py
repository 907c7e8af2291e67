from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.workers.own_cluster import Cluster, own_cluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster of the session's own (tests restart it), with a migrated
    database `migrated` to copy: `cluster.createdb(name, migrated=True, template="migrated")`."""
    started = time.monotonic()
    with own_cluster() as c:
        c.createdb("migrated", migrated=True)
        took = time.monotonic() - started
        print(
            f"\n[slow stage] own PostgreSQL cluster on 127.0.0.1:{c.port}, migrated, in {took:.1f} s"
        )
        yield c
