"""The domain errors services raise; ``problems.py`` maps them to HTTP answers in one place.

    ServiceError
    ├── FieldError   a request field breaks a rule (422, naming the field)
    ├── NotFound     no such object, or not one the caller may see (404)
    └── Conflict     the object's state does not allow it (409)

Services know nothing of HTTP: routes and pages call them, the app's handlers answer.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of the errors services raise on purpose; the message is one readable sentence."""


class FieldError(ServiceError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(ServiceError):
    pass


class Conflict(ServiceError):
    pass


__all__ = ["Conflict", "FieldError", "NotFound", "ServiceError"]
