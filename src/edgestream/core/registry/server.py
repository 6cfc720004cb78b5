"""The registry's HTTP face: the REST subset ``SchemaRegistryClient`` uses, on stdlib http.server.

Run it in the foreground with ``python -m edgestream.core.registry --db PATH --port N``.
``--host`` defaults to ``$EDGESTREAM_BIND_ADDR`` (else ``127.0.0.1``); beyond loopback it needs
users (``--users FILE``, HTTP Basic auth: :mod:`edgestream.core.registry.auth`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from edgestream.core import paths
from edgestream.core.exceptions import EdgestreamError, PortInUse
from edgestream.core.ports import bind_address, is_loopback
from edgestream.core.registry import errors
from edgestream.core.registry.auth import RegistryUsers, is_write, load_users
from edgestream.core.registry.routes import route
from edgestream.core.registry.store import RegistryStore

log = logging.getLogger("edgestream.registry")

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
DEFAULT_PORT = 8081


class RegistryServer:
    """A Confluent-compatible schema registry (Avro) over a durable SQLite file.

    Serves in a background thread; ids, versions and compatibility settings survive
    restarts on the same ``db_path``. Use it as a context manager or call
    :meth:`start` / :meth:`stop`. With ``users`` every request needs HTTP Basic credentials
    (:mod:`edgestream.core.registry.auth`); without, it only starts on a loopback ``host``.

    >>> import tempfile
    >>> from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with RegistryServer(Path(tmp) / "registry.db") as server:
    ...         client = SchemaRegistryClient({"url": server.url})
    ...         client.register_schema("demo-value", Schema('"string"', "AVRO"))
    ...         client.get_latest_version("demo-value").version
    1
    1
    """

    def __init__(
        self,
        db_path: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        users: RegistryUsers | None = None,
    ) -> None:
        self.db_path = Path(db_path)
        self.host = host
        self.port = port
        self.users = users
        self._http: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the registry, with the real port once started."""
        port = self._http.server_address[1] if self._http is not None else self.port
        return f"http://{self.host}:{port}"

    def start(self) -> None:
        """Open the database, bind the port and serve; returns once it is listening.

        Raises :class:`PortInUse` if the port is taken, :class:`EdgestreamError` if it would
        listen beyond loopback without users.
        """
        if self._http is not None:
            return
        if self.users is None and not is_loopback(self.host):
            raise EdgestreamError(
                f"the registry would listen on {self.host}, beyond loopback, with no users: "
                "give it --users FILE (lines name:password:read|write) or bind 127.0.0.1"
            )
        store = RegistryStore(self.db_path)
        try:
            self._http = _HttpServer((self.host, self.port), store, self.users)
        except OSError as error:
            store.close()
            if error.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"port {self.port} is in use: pass another --port or stop the process "
                    "holding it"
                ) from None
            raise
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"registry:{self._http.server_address[1]}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, drop open connections and close the database."""
        http, self._http = self._http, None
        if http is None:
            return
        http.shutdown()
        http.server_close()
        http.close_connections()
        if self._thread is not None:
            self._thread.join()
        http.store.close()

    def __enter__(self) -> RegistryServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], store: RegistryStore, users: RegistryUsers | None
    ) -> None:
        self.store = store
        self.users = users
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            (self._connections.add if open_ else self._connections.discard)(connection)

    def close_connections(self) -> None:
        """Shut keep-alive connections so no handler thread outlives the store."""
        with self._connections_lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections are closed after this many seconds

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        super().finish()

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        split = urlsplit(self.path)
        parts = [unquote(part) for part in split.path.split("/") if part]
        query = {key: values[-1] for key, values in parse_qs(split.query).items()}
        users = self.server.users
        refused = None
        if users is not None:
            refused = users.check(self.headers.get("Authorization"), is_write(method, parts))
        try:
            if refused is not None:
                raise refused
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise errors.bad_request("the request body must be a JSON object")
            status, answer = route(self.server.store, method, parts, query, body)
        except errors.ApiError as error:
            status, answer = error.http_status, error.body()
        except json.JSONDecodeError as error:
            status, answer = 400, errors.bad_request(f"request body is not JSON: {error}").body()
        except Exception as error:  # a bug or a storage failure: answer, keep serving
            log.exception("registry failed on %s %s", method, self.path)
            status, answer = (
                500,
                {"error_code": 50001, "message": f"Error in the registry: {error}"},
            )
        payload = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="edgestream schema registry"')
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def main(argv: list[str] | None = None) -> None:
    """Serve the registry in the foreground until SIGTERM or SIGINT (exit code 0).

    A port in use, or a bind beyond loopback without users, is a one-line message and exit
    code 2.
    """
    parser = argparse.ArgumentParser(
        prog="python -m edgestream.core.registry",
        description="Embedded Confluent-compatible schema registry (Avro) on SQLite.",
    )
    parser.add_argument("--db", type=Path, default=paths.stack_dir() / "registry.db")
    parser.add_argument(
        "--host", default=None, help="address to bind (default: $EDGESTREAM_BIND_ADDR or 127.0.0.1)"
    )
    parser.add_argument(
        "--users",
        type=Path,
        default=None,
        help="users file, lines name:password:read|write (default: "
        "$EDGESTREAM_REGISTRY_USERS_FILE; none: anonymous, loopback only)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    stopping = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        users = load_users(args.users)
        server = RegistryServer(args.db, args.host or bind_address(), args.port, users)
        server.start()
    except (PortInUse, EdgestreamError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:
        print(f"error: registry could not start on {args.db}: {error}", file=sys.stderr)
        sys.exit(1)
    log.info("schema registry listening on %s (db: %s)", server.url, args.db)
    if users is not None:
        log.info("HTTP Basic auth: %d user(s)", len(users.roles))
    try:
        while not stopping.wait(0.2):
            pass
    finally:
        server.stop()
    log.info("schema registry stopped")
