"""The exception tree: every failure arsync reports is one of these.

    ArsyncError                      exit code 1 unless a subclass says otherwise
    ├── ConfigError                  bad configuration or arguments (exit 2)
    ├── AuthError                    the platform refused our credentials
    │   ├── ReconnectNeeded          the grant is dead: a person must run `arsync connect`
    │   └── NotConnected             never connected: a person must run `arsync connect`
    ├── TransientError               worth retrying later (timeouts, 5xx); carries retry_after
    │   ├── RateLimited              the platform's limits said wait
    │   │   └── Parked               ...for longer than a worker should sleep
    │   └── Busy                     another process holds the lock (e.g. the same sync)
    ├── PermanentError               the platform refused the request itself (validation, 4xx)
    │   ├── NoEmailAddress           the customer has no address the platform can email
    │   └── EmailCapReached          the platform's daily cap of emails is spent for today
    ├── OutcomeUnknown               a write may or may not have been performed (a lost reply):
    │                                settled by reading the platform back, never by resending
    ├── DataError                    an answer (the platform's, or the store's) we cannot read
    │   └── StoreDamaged             the store's database file is damaged (exit 6)
    └── Unexpected                   any other exception, caught at a connector's boundary

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


class NotConnected(AuthError):
    """The connector was never linked to its company: `arsync connect NAME` first."""


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

    def __init__(self, message: str, *, status: int | None = None, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        #: the refusal's parsed body (the platform's fault object), for callers that must tell
        #: one refusal from another; never shown in messages beyond the snippet they carry
        self.body = body


class NoEmailAddress(PermanentError):
    """The platform cannot email the invoice: its customer has no usable email address."""


class EmailCapReached(PermanentError):
    """The platform's cap of emails a day for the company is reached: try again tomorrow."""


class OutcomeUnknown(ArsyncError):
    """A write was sent and no answer came back (a timeout, a dropped connection, a 5xx): the
    platform may have performed it. Only a read of the platform can tell; resending could send
    a reminder twice."""


class DataError(ArsyncError):
    exit_code = 6


class StoreDamaged(DataError):
    """The store's database cannot be read: a damaged, truncated or foreign file."""


class Parked(RateLimited):
    """The platform asked for a wait too long to sleep through: park the connector until then."""


class Busy(TransientError):
    """Another process holds the lock (e.g. a sync of the same connector is running)."""


class Unexpected(ArsyncError):
    """An exception arsync did not expect (a bug, or a library's surprise), caught where one
    connector's work ends so that it is recorded as a failure and spares the others."""

    @classmethod
    def wrap(cls, err: BaseException) -> Unexpected:
        text = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        made = cls(
            f"unexpected {type(err).__name__}{': ' + text if text else ''} "
            "(a fault in arsync: the traceback is in the log)"
        )
        made.__cause__ = err
        return made
