"""The embedded schema registry, driven by confluent-kafka's real SchemaRegistryClient."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from edgestream.core import paths
from edgestream.core.exceptions import PortInUse
from edgestream.core.ports import free_port
from edgestream.core.registry import RegistryServer, server, store
from tests.support.doctests import run_doctests

SUBJECT = "sensors.test-value"


def record(*fields: dict, name: str = "Reading") -> Schema:
    text = json.dumps({"type": "record", "name": name, "namespace": "t", "fields": fields})
    return Schema(text, "AVRO")


A = {"name": "a", "type": "int"}
B = {"name": "b", "type": "string"}
B_DEFAULT = {"name": "b", "type": "string", "default": "x"}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path / "registry.db") as running:
        yield running


@pytest.fixture
def client(registry: RegistryServer) -> SchemaRegistryClient:
    return fresh_client(registry)


def fresh_client(registry: RegistryServer) -> SchemaRegistryClient:
    """A client with empty caches, so every call reaches the server."""
    return SchemaRegistryClient({"url": registry.url, "max.retries": 0})


def error_of(call, *args, **kwargs) -> SchemaRegistryError:
    with pytest.raises(SchemaRegistryError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_register_then_read_back_every_way(client: SchemaRegistryClient, registry):
    schema = record(A)
    schema_id = client.register_schema(SUBJECT, schema)
    reader = fresh_client(registry)

    assert json.loads(reader.get_schema(schema_id).schema_str) == json.loads(schema.schema_str)
    latest = reader.get_latest_version(SUBJECT)
    assert (latest.schema_id, latest.version, latest.subject) == (schema_id, 1, SUBJECT)
    assert reader.get_version(SUBJECT, 1).schema_id == schema_id
    assert reader.get_versions(SUBJECT) == [1]
    assert reader.get_subjects() == [SUBJECT]
    found = reader.lookup_schema(SUBJECT, schema)
    assert (found.schema_id, found.version) == (schema_id, 1)
    assert reader.get_subjects_by_schema_id(schema_id) == [SUBJECT]
    pairs = reader.get_schema_versions(schema_id)
    assert [(p.subject, p.version) for p in pairs] == [(SUBJECT, 1)]
    assert reader.get_schema_types() == ["AVRO"]
    assert reader.get_schema_by_guid(latest.guid).schema_str == latest.schema.schema_str
    raw = httpx.get(f"{registry.url}/subjects/{SUBJECT}/versions/latest/schema").json()
    assert raw == json.loads(schema.schema_str)


def test_register_is_idempotent_and_ids_are_global(client: SchemaRegistryClient, registry):
    schema = record(A)
    first = client.register_schema(SUBJECT, schema)
    assert fresh_client(registry).register_schema(SUBJECT, schema) == first
    spaced = Schema(json.dumps(json.loads(schema.schema_str), indent=2), "AVRO")
    assert fresh_client(registry).register_schema(SUBJECT, spaced) == first
    assert client.get_versions(SUBJECT) == [1]

    other = fresh_client(registry).register_schema_full_response("other-value", schema)
    assert (other.schema_id, other.version) == (first, 1)
    assert client.register_schema("other-value", record(A, B_DEFAULT)) == first + 1
    assert sorted(client.get_subjects_by_schema_id(first)) == ["other-value", SUBJECT]


def test_register_answer_carries_id_guid_version_and_schema(registry):
    body = {"schema": record(A).schema_str}
    answer = httpx.post(f"{registry.url}/subjects/{SUBJECT}/versions", json=body)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == server.CONTENT_TYPE
    assert set(answer.json()) == {"id", "guid", "version", "subject", "schema"}


def test_not_found_errors_carry_confluent_codes(client: SchemaRegistryClient):
    client.register_schema(SUBJECT, record(A))
    cases = [
        (client.lookup_schema, ("nobody", record(A)), 40401),
        (client.lookup_schema, (SUBJECT, record(A, B)), 40403),
        (client.get_schema, (999,), 40403),
        (client.get_version, (SUBJECT, 7), 40402),
        (client.get_version, ("nobody", 1), 40401),
        (client.get_versions, ("nobody",), 40401),
        (client.get_latest_version, ("nobody",), 40401),
        (client.delete_subject, ("nobody",), 40401),
    ]
    for call, args, code in cases:
        error = error_of(call, *args)
        assert (error.http_status_code, error.error_code) == (404, code), (call, args)
        assert error.error_message
    error = error_of(client.get_version, SUBJECT, 0)
    assert (error.http_status_code, error.error_code) == (422, 42202)


def test_invalid_schema_is_422(client: SchemaRegistryClient):
    for text in ('{"type": "recrd", "name": "x"}', "{not json", '{"type": "int", "default": 1'):
        error = error_of(client.register_schema, SUBJECT, Schema(text, "AVRO"))
        assert (error.http_status_code, error.error_code) == (422, 42201)
        assert error.error_message.startswith("Invalid schema: invalid Avro schema")
    bad_default = record({"name": "a", "type": "int", "default": "zero"})
    error = error_of(client.register_schema, SUBJECT, bad_default)
    assert "does not match its type" in error.error_message
    error = error_of(client.register_schema, SUBJECT, Schema('{"type": "object"}', "JSON"))
    assert "only AVRO" in error.error_message


def test_soft_and_permanent_deletes(client: SchemaRegistryClient, registry):
    client.set_compatibility(SUBJECT, "NONE")
    ids = [client.register_schema(SUBJECT, record({"name": n, "type": "int"})) for n in "abc"]
    assert client.delete_version(SUBJECT, 2) == 2
    assert client.get_versions(SUBJECT) == [1, 3]
    assert client.get_versions(SUBJECT, deleted=True) == [1, 2, 3]
    assert error_of(client.delete_version, SUBJECT, 2).error_code == 40406
    assert error_of(client.delete_version, SUBJECT, 3, permanent=True).error_code == 40407
    assert client.delete_version(SUBJECT, 2, permanent=True) == 2
    assert client.get_versions(SUBJECT, deleted=True) == [1, 3]

    assert error_of(client.delete_subject, SUBJECT, permanent=True).error_code == 40405
    assert client.delete_subject(SUBJECT) == [1, 3]
    assert client.get_subjects() == []
    assert client.get_subjects(deleted=True) == [SUBJECT]
    assert error_of(client.delete_subject, SUBJECT).error_code == 40404
    assert error_of(fresh_client(registry).get_latest_version, SUBJECT).error_code == 40401
    assert fresh_client(registry).get_version(SUBJECT, 3, deleted=True).schema_id == ids[2]
    # a soft-deleted subject dropped its config; the schema ids stay resolvable
    assert error_of(client.get_compatibility, SUBJECT).error_code == 40408
    assert fresh_client(registry).get_schema(ids[0]).schema_str

    # (a client that registered this schema before answers from its cache, version None)
    again = fresh_client(registry).register_schema_full_response(
        SUBJECT, record({"name": "a", "type": "int"})
    )
    assert (again.schema_id, again.version) == (ids[0], 4)
    client.delete_subject(SUBJECT)
    assert client.delete_subject(SUBJECT, permanent=True) == [1, 3, 4]
    assert client.get_subjects(deleted=True) == []
    restarted = fresh_client(registry).register_schema_full_response(SUBJECT, record(A))
    assert (restarted.schema_id, restarted.version) == (ids[0], 1)


def test_avro_serializer_and_deserializer_round_trip(registry):
    schema_str = (paths.schemas_dir() / "sensor_reading.avsc").read_text()
    serialize = AvroSerializer(fresh_client(registry), schema_str)
    deserialize = AvroDeserializer(fresh_client(registry))
    ctx = SerializationContext("sensors.pump", MessageField.VALUE)
    reading = {
        "device_id": "pump-7",
        "site": "north",
        "device_type": "pump",
        "ts": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        "seq": 42,
        "channels": {"pressure": 3.5, "temp": 71.25},
        "tags": {"fw": "1.2"},
    }
    payload = serialize(reading, ctx)
    schema_id = fresh_client(registry).get_latest_version("sensors.pump-value").schema_id
    assert payload[0] == 0 and int.from_bytes(payload[1:5], "big") == schema_id
    assert deserialize(payload, ctx) == reading


def test_restart_keeps_ids_versions_and_config(tmp_path: Path):
    db = tmp_path / "registry.db"
    with RegistryServer(db) as first:
        client = fresh_client(first)
        id_a = client.register_schema("a-value", record(A))
        id_ab = client.register_schema("a-value", record(A, B_DEFAULT))
        client.register_schema("b-value", record(A))
        client.set_compatibility("b-value", "FULL")
        client.set_compatibility(level="FORWARD")
    with RegistryServer(db) as second:  # a new process-level server on a new free port
        client = fresh_client(second)
        assert client.get_subjects() == ["a-value", "b-value"]
        assert client.get_versions("a-value") == [1, 2]
        assert client.get_latest_version("a-value").schema_id == id_ab
        assert client.lookup_schema("b-value", record(A)).schema_id == id_a
        assert client.get_compatibility("b-value") == "FULL"
        assert client.get_compatibility() == "FORWARD"
        assert client.register_schema("c-value", record(B)) == id_ab + 1
        assert client.register_schema("a-value", record(A)) == id_a


def test_incompatible_version_is_409_compatible_evolution_is_accepted(client):
    client.register_schema(SUBJECT, record(A))
    error = error_of(client.register_schema, SUBJECT, record(A, B))
    assert (error.http_status_code, error.error_code) == (409, 409)
    assert error.error_message.startswith(
        f'Schema being registered is incompatible with an earlier schema for subject "{SUBJECT}"'
    )
    assert "version 1" in error.error_message
    assert "READER_FIELD_MISSING_DEFAULT_VALUE at /fields/1" in error.error_message
    assert client.get_versions(SUBJECT) == [1]
    evolved = client.register_schema_full_response(SUBJECT, record(A, B_DEFAULT))
    assert evolved.version == 2


def test_backward_transitive_checks_all_live_versions(client):
    v1, v2, v3 = record(A), record(A, B_DEFAULT), record(A, B)  # v3 reads v2, not v1
    client.set_compatibility("plain-value", "BACKWARD")
    client.set_compatibility("strict-value", "BACKWARD_TRANSITIVE")
    for subject in ("plain-value", "strict-value"):
        client.register_schema(subject, v1)
        client.register_schema(subject, v2)
    assert client.register_schema_full_response("plain-value", v3).version == 3
    error = error_of(client.register_schema, "strict-value", v3)
    assert error.http_status_code == 409
    assert "version 1" in error.error_message and "version 2" not in error.error_message
    client.delete_version("strict-value", 1)  # only live versions count
    assert client.register_schema_full_response("strict-value", v3).version == 3


def test_none_allows_anything(client):
    client.set_compatibility(SUBJECT, "none")
    client.register_schema(SUBJECT, record(A))
    client.register_schema(SUBJECT, Schema('"string"', "AVRO"))
    client.register_schema(SUBJECT, record(B, name="Other"))
    assert client.get_versions(SUBJECT) == [1, 2, 3]


def test_compatibility_test_endpoints(client, registry):
    assert client.test_compatibility("nobody", record(A)) is True
    client.register_schema(SUBJECT, record(A))
    client.register_schema(SUBJECT, record(A, B_DEFAULT))
    assert client.test_compatibility(SUBJECT, record(A, B)) is True  # reads v2 data
    assert client.test_compatibility(SUBJECT, record(A, B), version=1) is False
    assert client.test_compatibility_all_versions(SUBJECT, record(A, B)) is True  # BACKWARD
    client.set_compatibility(SUBJECT, "BACKWARD_TRANSITIVE")
    assert client.test_compatibility_all_versions(SUBJECT, record(A, B)) is False
    assert error_of(client.test_compatibility, SUBJECT, record(A), version=9).error_code == 40402

    url = f"{registry.url}/compatibility/subjects/{SUBJECT}/versions"
    answer = httpx.post(url, params={"verbose": "true"}, json={"schema": record(A, B).schema_str})
    body = answer.json()
    assert body["is_compatible"] is False
    (message,) = body["messages"]
    assert message.startswith("BACKWARD_TRANSITIVE: the new schema cannot read data written")
    quiet = httpx.post(f"{url}/latest", json={"schema": record(A, B).schema_str}).json()
    assert quiet == {"is_compatible": True}


def test_compatibility_config(client, registry):
    assert client.get_compatibility() == "BACKWARD"
    assert error_of(client.get_compatibility, SUBJECT).error_code == 40408
    url = f"{registry.url}/config/{SUBJECT}"
    assert httpx.get(url, params={"defaultToGlobal": "true"}).json() == {
        "compatibilityLevel": "BACKWARD"
    }
    assert client.set_compatibility(SUBJECT, "full_transitive") == {
        "compatibility": "FULL_TRANSITIVE"
    }
    assert client.get_compatibility(SUBJECT) == "FULL_TRANSITIVE"
    assert str(client.get_config(SUBJECT).compatibility_level) == "FULL_TRANSITIVE"
    assert str(client.delete_config(SUBJECT).compatibility_level) == "FULL_TRANSITIVE"
    assert error_of(client.get_compatibility, SUBJECT).error_code == 40408
    client.set_compatibility(level="NONE")
    assert client.get_compatibility() == "NONE"
    assert str(client.delete_config().compatibility_level) == "NONE"
    assert client.get_compatibility() == "BACKWARD"
    error = error_of(client.set_compatibility, SUBJECT, "sideways")
    assert (error.http_status_code, error.error_code) == (422, 42203)


def test_root_mode_and_plain_json_requests(registry):
    assert httpx.get(registry.url + "/").json() == {}
    assert httpx.get(registry.url + "/mode").json() == {"mode": "READWRITE"}
    plain = httpx.post(
        f"{registry.url}/subjects/{SUBJECT}/versions",
        content=json.dumps({"schema": '"long"'}),
        headers={"Content-Type": "application/json"},
    )
    assert plain.status_code == 200 and plain.json()["id"] == 1
    unknown = httpx.get(f"{registry.url}/no/such/path")
    assert unknown.status_code == 404 and unknown.json()["error_code"] == 404
    broken = httpx.post(f"{registry.url}/subjects/{SUBJECT}/versions", content=b"{")
    assert broken.status_code == 400 and "not JSON" in broken.json()["message"]


def test_subject_names_with_slashes_and_spaces(client):
    odd = "site/north pumps-value"
    schema_id = client.register_schema(odd, record(A))
    assert client.get_subjects() == [odd]
    assert client.get_latest_version(odd).schema_id == schema_id


def test_concurrent_registrations_get_unique_ids_and_versions(client, registry):
    client.set_compatibility(SUBJECT, "NONE")
    results: list[tuple[int, int]] = []
    lock = threading.Lock()

    def register(i: int) -> None:
        mine = fresh_client(registry)
        for j in range(5):
            got = mine.register_schema_full_response(
                SUBJECT, record({"name": f"f{i}_{j}", "type": "int"})
            )
            with lock:
                results.append((got.schema_id, got.version))

    threads = [threading.Thread(target=register, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(v for _, v in results) == list(range(1, 41))
    assert len({i for i, _ in results}) == 40


def test_port_in_use_raises(registry):
    port = int(registry.url.rsplit(":", 1)[1])
    with pytest.raises(PortInUse, match=f"port {port} is in use: pass another --port"):
        RegistryServer(registry.db_path.with_name("other.db"), port=port).start()


def test_docstring_examples_run():
    for module in (server, store):
        run_doctests(module)


# -- the `python -m edgestream.core.registry` process --------------------------------------


def start_process(db: Path, port: int) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "edgestream.core.registry", "--db", str(db)]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if httpx.get(f"{url}/subjects", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"registry at {url} not ready within {timeout}s")


@pytest.mark.integration
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_process_serves_and_exits_zero_on_signal(tmp_path: Path, stop_signal: int):
    port = free_port()
    proc = start_process(tmp_path / "registry.db", port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc)
        client = SchemaRegistryClient({"url": url, "max.retries": 0})
        assert client.register_schema(SUBJECT, record(A)) == 1
        proc.send_signal(stop_signal)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out == ""
    assert err.splitlines()[0].endswith(
        f"schema registry listening on {url} (db: {tmp_path / 'registry.db'})"
    )
    assert "POST" not in err  # requests are logged at DEBUG only


@pytest.mark.integration
def test_second_process_on_the_same_port_exits_two(tmp_path: Path):
    port = free_port()
    first = start_process(tmp_path / "registry.db", port)
    try:
        wait_ready(f"http://127.0.0.1:{port}", first)
        second = start_process(tmp_path / "other.db", port)
        _, err = second.communicate(timeout=20)
        assert second.returncode == 2
        assert err == (
            f"error: port {port} is in use: pass another --port or stop the process holding it\n"
        )
        assert first.poll() is None
    finally:
        os.kill(first.pid, signal.SIGTERM)
        first.communicate(timeout=10)
    assert first.returncode == 0
