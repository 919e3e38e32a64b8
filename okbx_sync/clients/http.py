"""The one HTTP path both API clients share: session, throttle, budget, retry policy.

Retry policy (pip/httpie style: retry only what is safe to repeat):
- reads are retried on timeouts, dropped connections, 5xx and non-JSON answers, with
  exponential backoff and jitter, honouring Retry-After;
- writes are never retried after they may have reached the server; the only exception is a
  rate-limit rejection the API documents as "not executed" (Bitrix24 503 QUERY_LIMIT_EXCEEDED,
  Okdesk 429), which is retried like a read;
- a per-method operating-time block (Bitrix24 429), a portal blocked by its support (Bitrix24
  503 OVERLOAD_LIMIT) or an exhausted retry series raises `RateLimited`, and the cycle stops
  cleanly to finish at a later run.

Files travel through the same path: an upload is a streamed body (`data`, a write: never sent
twice, it could not be anyway), a download (`download`) streams the answer into a sink under a
byte cap and is not retried here (the links of both systems are short-lived or single-use: the
caller asks for a fresh one).  Download links carry tokens, so no error names the URL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import requests

from .. import __version__
from ..errors import ApiError, MalformedResponse
from ..secrets import Redactor
from .limits import RequestBudget, Throttle
from .multipart import BodyError, OverCap

log = logging.getLogger(__name__)


class RateLimited(ApiError):
    """The API keeps refusing for load reasons; stop this cycle and come back later."""


class TooLarge(ApiError):
    """A file is larger than okbx may move (a byte cap), or than the server accepts (HTTP 413)."""


class Sink(Protocol):
    def write(self, chunk: bytes, /) -> Any: ...


@dataclass(frozen=True)
class Downloaded:
    size: int
    sha256: str


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: Any  # parsed JSON
    headers: dict[str, str]


# A classifier looks at (status, parsed body) and says whether it is a rate-limit rejection
# that was not executed ("retry"), an operating-time block ("block"), or ordinary ("ok").
Classifier = Callable[[int, Any], str]


@dataclass(frozen=True)
class RetryPolicy:
    read_attempts: int = 4
    rate_limit_attempts: int = 6
    backoff_seconds: float = 1.0
    backoff_cap: float = 60.0


class Transport:
    def __init__(
        self,
        system: str,
        *,
        throttle: Throttle,
        redactor: Redactor,
        timeout: tuple[float, float],
        classify: Classifier,
        policy: RetryPolicy | None = None,
        budget: RequestBudget | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.system = system
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", "User-Agent": f"okbx-sync/{__version__}"})
        self.throttle = throttle
        self.redact = redactor
        self.timeout = timeout
        self.classify = classify
        self.policy = policy or RetryPolicy()
        self.budget = budget or RequestBudget(None)
        self.sleep = sleep
        self.jitter = jitter
        self.requests_sent = 0
        # the Date header of the last answer (the server's clock) and when it came, on our clock
        self.server_date: tuple[str, float] | None = None

    def close(self) -> None:
        self.session.close()

    def server_skew(self, now: datetime) -> float | None:
        """Seconds the server's clock is ahead of `now` (negative: behind), from its last answer."""
        if self.server_date is None:
            return None
        header, at = self.server_date
        received = now - timedelta(seconds=max(0.0, self.throttle.monotonic() - at))
        return skew_seconds(header, received)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.policy.backoff_cap)
        base = self.policy.backoff_seconds * (2 ** (attempt - 1))
        return min(self.policy.backoff_cap, base) * (0.5 + self.jitter())

    def request(
        self,
        http_method: str,
        url: str,
        op: str,
        *,
        params: Any = None,
        body: Any = None,
        write: bool,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> HttpAnswer:
        """`data` is a streamed body (a file upload): it can be sent only once, so only as a write."""
        if data is not None and not write:
            raise ValueError("a streamed body is sent once: it must be a write")
        attempt = 0
        limited = 0
        while True:
            attempt += 1
            try:
                answer = self._send_once(http_method, url, op, params=params, body=body, data=data, headers=headers)
            except ApiError as error:
                # A read may be repeated; a write that may have reached the server may not.
                if write or attempt >= self.policy.read_attempts:
                    raise
                delay = self._backoff(attempt, error.retry_after)
                log.info("%s %s: %s; retrying in %.1fs", self.system, op, error.message, delay)
                self.sleep(delay)
                continue
            verdict = self.classify(answer.status, answer.body)
            if verdict == "ok":
                return answer
            retry_after = _retry_after(answer.headers)
            if verdict == "block" or limited + 1 >= self.policy.rate_limit_attempts:
                why = (
                    f"{self.redact(_describe_error(answer.body))}; stopping this cycle"
                    if verdict == "block"
                    else "rate limit: the API keeps refusing, stopping this cycle"
                )
                raise RateLimited(
                    self.system,
                    op,
                    why,
                    status=answer.status,
                    code=_error_code(answer.body),
                    retry_after=retry_after,
                )
            if data is not None:  # a consumed stream cannot be sent again: let the caller come back
                raise RateLimited(self.system, op, "rate limited during an upload", status=answer.status)
            limited += 1
            attempt -= 1  # a rejection by the limiter is not a failed attempt
            delay = self._backoff(limited, retry_after)
            log.info("%s %s: rate limited (HTTP %s); slowing down for %.1fs", self.system, op, answer.status, delay)
            self.throttle.cool_down(delay)

    def _send_once(
        self,
        http_method: str,
        url: str,
        op: str,
        *,
        params: Any,
        body: Any,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> HttpAnswer:
        self.budget.spend()
        self.throttle.acquire()
        self.requests_sent += 1
        try:
            response = self.session.request(
                http_method,
                url,
                params=params,
                json=body if data is None else None,
                data=data,
                headers=headers,
                timeout=self.timeout,
            )
        except requests.Timeout:
            raise ApiError(self.system, op, "timed out waiting for the answer", ambiguous=True) from None
        except BodyError as exc:  # an upload stopped part-way: the server never got a whole request
            raise (TooLarge if isinstance(exc, OverCap) else ApiError)(
                self.system, op, f"upload stopped: {exc}"
            ) from None
        except requests.ConnectionError as exc:
            reason = self.redact(_short_reason(exc))
            raise ApiError(self.system, op, f"connection failed: {reason}", ambiguous=True) from None
        except requests.RequestException as exc:
            raise ApiError(
                self.system, op, self.redact(f"request failed: {exc.__class__.__name__}"), ambiguous=True
            ) from None
        headers = {k.lower(): v for k, v in response.headers.items()}
        try:
            parsed = json.loads(response.content.decode("utf-8")) if response.content else None
        except (ValueError, UnicodeDecodeError):
            kind = headers.get("content-type", "unknown content type").split(";")[0]
            raise MalformedResponse(
                self.system,
                op,
                f"answer is not JSON ({kind}, {len(response.content)} bytes)",
                status=response.status_code,
                ambiguous=True,
                retry_after=_retry_after(headers),
            ) from None
        if response.status_code >= 500 and self.classify(response.status_code, parsed) == "ok":
            raise ApiError(
                self.system,
                op,
                self.redact(_describe_error(parsed)),
                status=response.status_code,
                code=_error_code(parsed),
                ambiguous=True,
                retry_after=_retry_after(headers),
            )
        if "date" in headers:
            self.server_date = (headers["date"], self.throttle.monotonic())
        return HttpAnswer(response.status_code, parsed, headers)

    def download(
        self, url: str, op: str, sink: Sink, *, max_bytes: int | None, headers: dict[str, str] | None = None
    ) -> Downloaded:
        """GET `url` and write the body into `sink` chunk by chunk; more than `max_bytes` aborts
        cleanly (the connection is closed, nothing more is read).  Never retried here."""
        self.budget.spend()
        self.throttle.acquire()
        self.requests_sent += 1
        digest, size = hashlib.sha256(), 0
        headers = {"Accept-Encoding": "identity", **(headers or {})}  # the bytes as stored: sizes compare
        try:
            with self.session.get(url, stream=True, timeout=self.timeout, headers=headers) as response:
                if response.status_code >= 400:
                    raise self._download_refused(op, response)
                encoded = response.headers.get("Content-Encoding", "identity") != "identity"
                declared = "" if encoded else response.headers.get("Content-Length", "")
                if max_bytes is not None and declared.isdigit() and int(declared) > max_bytes:
                    raise TooLarge(self.system, op, f"file of {declared} bytes is over the cap of {max_bytes}")
                for chunk in response.iter_content(chunk_size=1 << 16):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise TooLarge(self.system, op, f"file is over the cap of {max_bytes} bytes")
                    digest.update(chunk)
                    sink.write(chunk)
                if declared.isdigit() and size != int(declared):
                    raise MalformedResponse(self.system, op, f"download ended after {size} of {declared} bytes")
        except requests.Timeout:
            raise ApiError(self.system, op, "timed out during the download") from None
        except requests.RequestException as exc:
            raise ApiError(self.system, op, f"download failed: {_short_reason(exc)}") from None
        return Downloaded(size, digest.hexdigest())

    def _download_refused(self, op: str, response: requests.Response) -> ApiError:
        """An error answer to a download: its JSON error if it has one, never the URL (a token)."""
        head = response.raw.read(4096, decode_content=True) if response.raw is not None else b""
        try:
            detail = _describe_error(json.loads(head.decode("utf-8")))
        except (ValueError, UnicodeDecodeError):
            kind = response.headers.get("Content-Type", "unknown content type").split(";")[0]
            detail = f"refused ({kind})"
        kind_of = TooLarge if response.status_code == 413 else ApiError
        return kind_of(self.system, op, self.redact(detail), status=response.status_code)


def _retry_after(headers: dict[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _short_reason(exc: Exception) -> str:
    text = str(exc)
    for hint in (
        "Connection refused",
        "Connection reset",
        "RemoteDisconnected",
        "Name or service not known",
        "Connection aborted",
        "timed out",
    ):
        if hint in text:
            return hint
    return exc.__class__.__name__


def _error_code(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return None


def _describe_error(body: Any) -> str:
    if isinstance(body, dict):
        if "error_description" in body or "error" in body:
            return str(body.get("error_description") or body.get("error"))
        if "errors" in body:
            return flatten_errors(body["errors"])
    return "server error"


def flatten_errors(errors: Any, prefix: str = "") -> str:
    """Okdesk `errors` comes as a string, a list, or nested {field: [messages]}."""
    if isinstance(errors, str):
        return f"{prefix}{errors}"
    if isinstance(errors, list):
        return "; ".join(flatten_errors(e, prefix) for e in errors)
    if isinstance(errors, dict):
        return "; ".join(
            flatten_errors(v, f"{prefix}{k}.") if isinstance(v, dict) else f"{prefix}{k}: {flatten_errors(v)}"
            for k, v in errors.items()
        )
    return f"{prefix}{errors!r}"


def skew_seconds(date_header: str | None, now: datetime) -> float | None:
    """How far a server's clock (an HTTP Date header) is ahead of `now`; negative: behind."""
    if not date_header:
        return None
    try:
        server = parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return None
    return (server - now).total_seconds() if server.tzinfo is not None else None
