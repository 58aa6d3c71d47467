"""Every error hadron_hf raises, in one tree.

::

    HadronError
    ├── ConfigError                 bad configuration (unknown field, missing model, bad value)
    ├── InputError                  a bad input row (missing, empty, wrong type, over-long prompt)
    ├── RankingParseError           a judge reply with no usable ``RANKING:`` line
    └── BackendError                a chat call failed
        ├── RetryableError          worth retrying: carries ``retry_after`` seconds when the server said
        │   ├── RateLimitError      429
        │   ├── ServerError         5xx, malformed or empty reply
        │   ├── CallTimeoutError    no reply within the timeout
        │   └── ConnectError        connection refused, reset or dropped
        ├── RequestRejectedError    400: this request can never succeed (context too long); fails one row
        └── FatalBackendError       the job cannot go on: stop it with this message
            ├── AuthenticationError 401/403: wrong or missing key
            ├── ModelNotFoundError  404: unknown model or path
            └── EndpointDownError   every call fails: dead endpoint or persistent errors

Messages never contain API keys: backends build them from status codes and server text only.
"""

from __future__ import annotations


class HadronError(Exception):
    """Base class of every hadron_hf error."""


class ConfigError(HadronError, ValueError):
    """The configuration is invalid."""


class InputError(HadronError, ValueError):
    """An input row cannot be refined (missing, empty, wrong type or over-long prompt)."""


class RankingParseError(HadronError, ValueError):
    """A judge reply holds no ranking that names every candidate exactly once."""


class BackendError(HadronError):
    """A chat call failed."""


class RetryableError(BackendError):
    """A transient failure; ``retry_after`` is the server's requested wait in seconds, if any.

    ``0.0`` means the server said no wait is needed (``x-ratelimit-reset-*: 0``): a retry layer still
    applies its own minimum backoff, so a burst of such replies is not retried in a tight loop.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitError(RetryableError):
    """HTTP 429."""


class ServerError(RetryableError):
    """HTTP 5xx, or a reply that could not be read."""


class CallTimeoutError(RetryableError):
    """No reply within the configured timeout."""


class ConnectError(RetryableError):
    """The connection was refused, reset or dropped."""


class RequestRejectedError(BackendError):
    """HTTP 400 and friends: this request cannot succeed, but other rows may."""


class FatalBackendError(BackendError):
    """The whole job must stop (wrong key, unknown model, dead endpoint)."""


class AuthenticationError(FatalBackendError):
    """HTTP 401/403."""


class ModelNotFoundError(FatalBackendError):
    """HTTP 404, or a local model file that does not exist."""


class EndpointDownError(FatalBackendError):
    """Calls keep failing; going on would only burn time."""
