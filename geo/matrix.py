"""The travel-time matrix: what a travel provider (`geo.travel`) computes and the solver
(`dispatch`) reads. It lives here, below both, so that geo never imports the dispatcher's
model; it needs nothing but numpy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class MatrixError(ValueError):
    """Travel data that is not a square, non-negative pair of matrices of one size."""


@dataclass(frozen=True, slots=True, eq=False)
class Matrix:
    """Travel durations (whole seconds) and distances (whole metres) between location
    indices: `durations[i, j]` from i to j (not necessarily symmetric: one-way streets),
    0 on the diagonal. Read-only int64 arrays, so the solver can index and slice them.

    The travel providers (`geo.travel`) also say how they priced it: `provider` names the
    one that did, `fallback_pairs` counts the off-diagonal pairs a road provider could not
    route and filled with straight-line estimates, and `off_network` lists the points it
    could not snap to a road (all their pairs are straight-line). Both are empty for the
    straight-line provider, whose every pair is an estimate by design."""

    durations: np.ndarray
    distances: np.ndarray
    provider: str
    fallback_pairs: int
    off_network: tuple[int, ...]

    def __init__(
        self,
        durations: Sequence[Sequence[int]] | np.ndarray,
        distances: Sequence[Sequence[int]] | np.ndarray,
        provider: str = "",
        fallback_pairs: int = 0,
        off_network: tuple[int, ...] = (),
    ) -> None:
        dur = np.array(durations, dtype=np.int64)
        dist = np.array(distances, dtype=np.int64)
        if dur.ndim != 2 or dur.shape[0] != dur.shape[1] or dist.shape != dur.shape:
            raise MatrixError("durations and distances must be square matrices of the same size")
        if (dur < 0).any() or (dist < 0).any():
            raise MatrixError("negative travel duration or distance")
        dur.setflags(write=False)
        dist.setflags(write=False)
        object.__setattr__(self, "durations", dur)
        object.__setattr__(self, "distances", dist)
        object.__setattr__(self, "provider", provider)
        object.__setattr__(self, "fallback_pairs", int(fallback_pairs))
        object.__setattr__(self, "off_network", tuple(off_network))

    @property
    def size(self) -> int:
        return int(self.durations.shape[0])

    def __len__(self) -> int:
        return self.size

    # Equal by value, as the travel providers' matrices were before they became this
    # class: the same numbers, priced the same way.
    def _key(self) -> tuple[object, ...]:
        return (
            self.durations.shape,
            self.durations.tobytes(),
            self.distances.tobytes(),
            self.provider,
            self.fallback_pairs,
            self.off_network,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Matrix) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())
