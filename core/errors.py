"""Domain errors. The API maps them to HTTP; jobs log them."""

from __future__ import annotations


class DomainError(Exception):
    """Base for errors a caller can act on; `code` is stable, `message` is for people."""

    code = "domain_error"

    def __init__(self, message: str, *, field: str | None = None, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details


class ValidationFailed(DomainError):
    code = "invalid"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class IllegalTransition(Conflict):
    code = "illegal_transition"


class MissingEvidence(IllegalTransition):
    """A request may only close as fixed with a verified completion behind it."""

    code = "missing_evidence"


class PermissionDenied(DomainError):
    code = "forbidden"


class OutsideServiceArea(ValidationFailed):
    """A location beyond the city's service area (and its border tolerance)."""

    code = "outside_service_area"


class ServiceAreaFromSetting(Conflict):
    """STREETLOOP_SERVICE_AREA governs: the area cannot be changed through the API."""

    code = "service_area_from_setting"
