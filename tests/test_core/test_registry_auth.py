"""HTTP Basic auth of the embedded registry (issue 23, item 8), against the real registry
process (``python -m edgestream.core.registry --users FILE``), driven with raw HTTP, with
confluent-kafka's ``SchemaRegistryClient`` (``basic.auth.user.info``) and with our serde."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from edgestream.core.exceptions import EdgestreamError, ServiceUnavailable
from edgestream.core.ports import free_port
from edgestream.core.registry import auth
from edgestream.core.registry.auth import RegistryUsers
from edgestream.core.registry.client import registry_client
from tests.support.doctests import run_doctests

SUBJECT = "fleet.auth-value"
USERS = "# name:password:role\nci:ci-secret:write\nviewer:view:secret:read\n"
WRITER = ("ci", "ci-secret")
READER = ("viewer", "view:secret")  # a password may hold ':'

V1 = json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]})
V2_INCOMPATIBLE = json.dumps({"type": "record", "name": "R",
                              "fields": [{"name": "b", "type": "string"}]})  # fmt: skip


def _start(db: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "edgestream.core.registry", "--db", str(db), *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a registry process with a writer and a read-only user."""
    tmp = tmp_path_factory.mktemp("registry-auth")
    users = tmp / "users"
    users.write_text(USERS)
    users.chmod(0o600)
    port = free_port()
    proc = _start(tmp / "registry.db", "--host", "127.0.0.1", "--port", str(port),
                  "--users", str(users))  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_answering(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def _wait_answering(url: str, proc: subprocess.Popen[str]) -> None:
    """Until the registry answers (401 without credentials is an answer)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            httpx.get(f"{url}/subjects", timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"registry at {url} not answering")


def _call(url: str, method: str, path: str, who: tuple[str, str] | None, body=None):
    return httpx.request(method, url + path, json=body, auth=who, timeout=10)


def test_anonymous_and_wrong_credentials_get_401_for_reads_and_writes(secured: str) -> None:
    register = ("POST", f"/subjects/{SUBJECT}/versions", {"schema": V1})
    for who in (None, ("ci", "wrong"), ("nobody", "ci-secret"), ("viewer", "view")):
        for method, path, body in (("GET", "/subjects", None), register,
                                   ("PUT", "/config", {"compatibility": "NONE"}),
                                   ("DELETE", f"/subjects/{SUBJECT}", None)):  # fmt: skip
            answer = _call(secured, method, path, who, body)
            assert answer.status_code == 401, (who, method, path, answer.text)
            assert answer.json()["error_code"] == 40101
            assert answer.headers["WWW-Authenticate"].startswith("Basic realm=")
    garbage = httpx.get(f"{secured}/subjects", headers={"Authorization": "Basic %%%"})
    assert garbage.status_code == 401
    assert _call(secured, "GET", "/subjects", WRITER).json() == []  # nothing was written


def test_writer_may_do_every_write_reader_only_reads(secured: str) -> None:
    """The evaluation's sequence, as the writer: register, compatibility NONE, an incompatible
    version, delete, hard delete - all 200. The read-only user gets 403 on each write, and
    200 on reads (GETs, a schema lookup, a compatibility check)."""
    subject = f"{SUBJECT}-seq"
    steps = [
        ("POST", f"/subjects/{subject}/versions", {"schema": V1}),
        ("PUT", f"/config/{subject}", {"compatibility": "NONE"}),
        ("POST", f"/subjects/{subject}/versions", {"schema": V2_INCOMPATIBLE}),
        ("DELETE", f"/subjects/{subject}", None),
        ("DELETE", f"/subjects/{subject}?permanent=true", None),
    ]
    for method, path, body in steps:
        denied = _call(secured, method, path, READER, body)
        assert denied.status_code == 403, (method, path, denied.text)
        assert denied.json()["error_code"] == 40301
        if method == "POST" and body["schema"] == V1:  # reads between writes
            assert _call(secured, "GET", f"/subjects/{subject}/versions", READER).status_code == 404
        done = _call(secured, method, path, WRITER, body)
        assert done.status_code == 200, (method, path, done.text)
        if path.endswith("/versions") and body["schema"] == V1:
            lookup = _call(secured, "POST", f"/subjects/{subject}", READER, {"schema": V1})
            assert lookup.status_code == 200 and lookup.json()["version"] == 1
            check = _call(secured, "POST", f"/compatibility/subjects/{subject}/versions/latest",
                          READER, {"schema": V2_INCOMPATIBLE})  # fmt: skip
            assert check.status_code == 200 and check.json()["is_compatible"] is False
            assert _call(secured, "GET", "/subjects", READER).json() == [subject]
    assert _call(secured, "GET", "/subjects?deleted=true", READER).json() == []


def test_confluent_client_with_basic_auth_user_info(secured: str) -> None:
    def client(who: tuple[str, str] | None) -> SchemaRegistryClient:
        conf = {"url": secured, "max.retries": 0}
        if who:
            conf["basic.auth.user.info"] = ":".join(who)
        return SchemaRegistryClient(conf)

    schema = Schema(V1, "AVRO")
    subject = f"{SUBJECT}-confluent"
    with pytest.raises(SchemaRegistryError) as anonymous:
        client(None).register_schema(subject, schema)
    assert anonymous.value.http_status_code == 401
    with pytest.raises(SchemaRegistryError) as read_only:
        client(READER).register_schema(subject, schema)
    assert read_only.value.http_status_code == 403
    schema_id = client(WRITER).register_schema(subject, schema)
    assert client(READER).get_schema(schema_id).schema_str == V1
    assert client(READER).get_latest_version(subject).schema_id == schema_id


def test_our_serde_sends_user_info_from_the_environment(
    secured: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgestream.core.serde import AvroDeserializer, AvroSerializer

    subject = f"{SUBJECT}-serde"
    monkeypatch.delenv(auth.USER_INFO_ENV, raising=False)
    with pytest.raises(ServiceUnavailable, match=rf"refused the request.*{auth.USER_INFO_ENV}"):
        AvroSerializer(secured, "WindowSummary", subject).schema_id  # noqa: B018
    monkeypatch.setenv(auth.USER_INFO_ENV, ":".join(READER))
    with pytest.raises(ServiceUnavailable, match=r"403.*with write access"):
        AvroSerializer(secured, "WindowSummary", subject).schema_id  # noqa: B018
    monkeypatch.setenv(auth.USER_INFO_ENV, ":".join(WRITER))
    serializer = AvroSerializer(secured, "WindowSummary", subject)
    assert serializer.schema_id > 0
    monkeypatch.setenv(auth.USER_INFO_ENV, ":".join(READER))  # a consumer only reads
    reader = registry_client(secured)
    assert reader.get_schema(serializer.schema_id).schema_type == "AVRO"
    assert AvroDeserializer(secured).registry is reader


def test_refuses_to_listen_beyond_loopback_without_users(tmp_path: Path) -> None:
    """``--host 0.0.0.0`` (or ``$EDGESTREAM_BIND_ADDR``) without users: a one-line message and
    exit code 2, nothing served; with users it starts."""
    port = str(free_port())
    for args, extra in ((["--host", "0.0.0.0"], {}), ([], {"EDGESTREAM_BIND_ADDR": "0.0.0.0"})):
        env = {**os.environ, **extra}
        env.pop(auth.USERS_FILE_ENV, None)
        proc = _start(tmp_path / "r.db", *args, "--port", port, env=env)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 2, err
        assert err.count("\n") == 1 and err.startswith(
            "error: the registry would listen on 0.0.0.0, beyond loopback, with no users"
        )
    users = tmp_path / "users"
    users.write_text(USERS)
    env = {**os.environ, auth.USERS_FILE_ENV: str(users), "EDGESTREAM_BIND_ADDR": "0.0.0.0"}
    proc = _start(tmp_path / "r.db", "--port", port, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_answering(url, proc)
        assert httpx.get(f"{url}/subjects").status_code == 401
        assert httpx.get(f"{url}/subjects", auth=READER).status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_users_file_errors_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(EdgestreamError, match="users line 2: expected name:password:read"):
        RegistryUsers.parse("a:b:read\nc:d:admin\n")
    with pytest.raises(EdgestreamError, match="no users"):
        RegistryUsers.parse("# nothing\n")
    with pytest.raises(EdgestreamError, match="cannot read the registry users file"):
        auth.load_users(tmp_path / "missing")
    assert auth.load_users(None, env={}) is None


def test_docstring_examples_run() -> None:
    run_doctests(auth)
