"""The exception tree: every failure arsync reports is one of these.

    ArsyncError                      exit code 1 unless a subclass says otherwise
    ├── ConfigError                  bad configuration or arguments (exit 2)
    ├── AuthError                    the platform refused our credentials
    │   └── ReconnectNeeded          the grant is dead: a person must run `arsync connect`
    ├── TransientError               worth retrying later (timeouts, 5xx); carries retry_after
    │   └── RateLimited              the platform's limits said wait
    ├── PermanentError               the platform refused the request itself (validation, 4xx)
    └── DataError                    the platform answered something we cannot understand

Library exceptions are converted at the boundary with `raise … from err`.
"""

from __future__ import annotations


class ArsyncError(Exception):
    exit_code = 1


class ConfigError(ArsyncError):
    exit_code = 2


class AuthError(ArsyncError):
    exit_code = 3


class ReconnectNeeded(AuthError):
    pass


class TransientError(ArsyncError):
    exit_code = 4

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(TransientError):
    def __init__(
        self, message: str, *, retry_after: float | None = None, problem: str | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.problem = problem


class PermanentError(ArsyncError):
    exit_code = 5


class DataError(ArsyncError):
    exit_code = 6


class Parked(RateLimited):
    """The platform asked for a wait too long to sleep through: park the connector until then."""
