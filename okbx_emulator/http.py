"""Loopback HTTP harness shared by the Okdesk and Bitrix24 emulators.

An emulator is an `EmulatorApp`: a plain object with `handle(request) -> Response`
that owns its in-memory state behind a lock.  `EmulatorServer` serves one app on
127.0.0.1 from a daemon thread, keeps a request log (for tests and benchmarks) and
applies injected faults, so tests can reproduce what real SaaS APIs do to us:
an error answer instead of a commit, or a commit whose answer never arrives.
"""

from __future__ import annotations

import io
import json
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any, Literal, Protocol
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]  # in order, repeated keys kept (PHP/Rails array syntax)
    headers: dict[str, str]
    body: bytes
    # A large multipart body (a file upload) is spooled to a temporary file instead of `body`.
    body_file: IO[bytes] | None = None

    def open_body(self) -> IO[bytes]:
        """The body as a binary file, wherever it is kept (multipart parsers read it in chunks)."""
        if self.body_file is None:
            return io.BytesIO(self.body)
        self.body_file.seek(0)
        return self.body_file

    def query_values(self, key: str) -> list[str]:
        return [v for k, v in self.query if k == key]

    def query_value(self, key: str) -> str | None:
        values = self.query_values(key)
        return values[-1] if values else None

    def json(self) -> Any:
        """The JSON body; raises ValueError when it is not JSON."""
        if not self.body:
            return {}
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    # A streamed body (a file download): `length` bytes from `chunks`, sent as they come.
    chunks: Iterable[bytes] | None = None
    length: int = 0

    @classmethod
    def stream(
        cls, length: int, chunks: Iterable[bytes], content_type: str, headers: dict[str, str] | None = None
    ) -> Response:
        return cls(200, b"", content_type=content_type, headers=headers or {}, chunks=chunks, length=length)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), headers=headers or {})

    @classmethod
    def html(cls, status: int, text: str) -> Response:
        return cls(status, text.encode("utf-8"), content_type="text/html; charset=utf-8")


HTML_500 = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
    "<hr><center>nginx</center></body></html>"
)


@dataclass
class Fault:
    """One injected misbehaviour for requests whose operation name equals `op`.

    when="before": the request is answered with the fault and NOT applied.
    when="after":  the request is applied (committed), then the answer is replaced.
    kind: "response" (status/body below), "drop" (close the socket, no answer),
          "hang" (block until `release()` or `hang_seconds`, then answer normally or drop),
          "delay" (sleep `delay_seconds` before answering normally).
    """

    op: str
    when: Literal["before", "after"] = "after"
    kind: Literal["response", "drop", "hang", "delay"] = "response"
    response: Response | None = None
    times: int = 1
    delay_seconds: float = 0.0
    hang_seconds: float = 30.0
    hit: threading.Event = field(default_factory=threading.Event)
    _released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self._released.set()

    @property
    def per_command(self) -> bool:
        """Inside a batch, a refusal answers its own command; anything else the whole request."""
        return self.kind == "response" and self.response is not None and self.response.status in (400, 429)


class EmulatorApp(Protocol):
    def handle(self, request: Request) -> Response: ...

    def operation_name(self, request: Request) -> str:
        """A short name for fault matching and the request log, e.g. 'tasks.task.add'."""
        ...


@dataclass(frozen=True)
class LoggedRequest:
    op: str
    method: str
    path: str
    status: int
    at: float
    carried: tuple[str, ...] = ()  # a batch: the methods of its commands


class _DropConnection(Exception):
    pass


SPOOL_ABOVE = 1 << 20  # a multipart body larger than this waits in a temporary file, not in memory
_COPY_CHUNK = 1 << 16


def _read_body(handler: BaseHTTPRequestHandler) -> tuple[bytes, IO[bytes] | None]:
    """The request body: bytes, or a spooled file for a large multipart one (a file upload).

    `Transfer-Encoding: chunked` is decoded (a streaming client that does not know the length)."""
    multipart = handler.headers.get("Content-Type", "").lower().startswith("multipart/")
    sink: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_ABOVE) if multipart else io.BytesIO()
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        while size := int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16):
            _copy(handler.rfile, sink, size)  # type: ignore[arg-type]
            handler.rfile.readline()  # the CRLF after each chunk
        while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
    else:
        _copy(handler.rfile, sink, int(handler.headers.get("Content-Length") or 0))  # type: ignore[arg-type]
    if not multipart or sink.tell() <= SPOOL_ABOVE:
        sink.seek(0)
        data = sink.read()
        sink.close()
        return data, None
    return b"", sink


def _copy(source: IO[bytes], sink: IO[bytes], size: int) -> None:
    while size > 0:
        chunk = source.read(min(size, _COPY_CHUNK))
        if not chunk:
            raise ConnectionError("request body ended early")
        sink.write(chunk)
        size -= len(chunk)


class EmulatorServer:
    """Serves one emulator app on 127.0.0.1:<free port> from a daemon thread."""

    def __init__(self, app: EmulatorApp, port: int = 0) -> None:
        self.app = app
        self.log: list[LoggedRequest] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes; without TCP_NODELAY, Nagle plus delayed
                # ACKs add ~40 ms to every keep-alive request and the benchmarks measure that instead.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the request log replaces stderr chatter

            def date_time_string(self, timestamp: float | None = None) -> str:
                # the Date header follows the emulated server's clock (a server whose clock is off)
                now = getattr(server.app, "clock_now", None)
                if timestamp is None and now is not None:
                    return formatdate(now().timestamp(), usegmt=True)
                return super().date_time_string(timestamp)

            def _serve(self) -> None:
                try:
                    body, body_file = _read_body(self)
                except OSError:  # the client went away mid-body (an upload it stopped): nothing to answer
                    self.close_connection = True
                    return
                parts = urlsplit(self.path)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qsl(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    body_file=body_file,
                )
                try:
                    response = server._dispatch(request)
                except _DropConnection:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(2)
                    except OSError:
                        pass
                    return
                finally:
                    if body_file is not None:
                        body_file.close()
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                length = response.length if response.chunks is not None else len(response.body)
                self.send_header("Content-Length", str(length))
                for key, value in response.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    for chunk in (response.body,) if response.chunks is None else response.chunks:
                        self.wfile.write(chunk)
                except OSError:  # the client went away (a byte cap, a stopped upload): not our problem
                    self.close_connection = True

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        if hasattr(app, "command_fault"):  # the app answers faults of commands inside its batches
            app.command_fault = lambda method: self._take_fault(method, per_command=True)

    # -- lifecycle -------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> EmulatorServer:
        # a short poll interval makes stop() quick: tests start and stop hundreds of servers
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        for fault in self._faults:
            fault.release()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults and log --------------------------------------------------
    def inject(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            for fault in self._faults:
                fault.release()
            self._faults.clear()

    def count(self, op: str | None = None) -> int:
        with self._lock:
            return sum(1 for entry in self.log if op is None or entry.op == op)

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(entry.op for entry in self.log)

    def reset_log(self) -> None:
        with self._lock:
            self.log.clear()

    def _take_fault(self, op: str, *, per_command: bool | None = None) -> Fault | None:
        """`per_command`: only faults that (False: do not) answer one command inside a batch."""
        with self._lock:
            for fault in self._faults:
                if per_command is not None and fault.per_command != per_command:
                    continue
                if fault.op == op and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _dispatch(self, request: Request) -> Response:
        op = self.app.operation_name(request)
        fault = self._take_fault(op)
        # A batch: a lost, throttled or dropped answer for a method it carries hits the whole
        # request; a refusal (400, 429) answers that one command (the app asks per command).
        carried = tuple(self.app.carried_operations(request)) if hasattr(self.app, "carried_operations") else ()
        for inner in carried if fault is None else ():
            if (fault := self._take_fault(inner, per_command=False)) is not None:
                break
        status = 0  # 0 in the log: the connection was dropped without an answer
        try:
            if fault is not None and fault.when == "before":
                response = self._fault_response(fault, None)
            else:
                response = self.app.handle(request)
                if fault is not None:
                    response = self._fault_response(fault, response)
            status = response.status
            return response
        finally:
            with self._lock:
                self.log.append(LoggedRequest(op, request.method, request.path, status, time.time(), carried))

    def _fault_response(self, fault: Fault, applied: Response | None) -> Response:
        fault.hit.set()
        if fault.kind == "delay":
            time.sleep(fault.delay_seconds)
            return applied if applied is not None else (fault.response or Response.html(502, HTML_500))
        if fault.kind == "hang":
            fault._released.wait(fault.hang_seconds)
            if applied is not None:
                return applied
            raise _DropConnection
        if fault.kind == "drop":
            raise _DropConnection
        return fault.response or Response.html(502, HTML_500)
