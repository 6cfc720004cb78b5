"""Flink plumbing shared by the cloud jobs and the SQL query layer: environments, Kafka DDL.

* :func:`flink_env` - a PyFlink stream + table environment: a local MiniCluster, or a remote
  cluster at ``jobmanager`` (``HOST:PORT`` of its REST endpoint). The official Kafka SQL
  connector (kafka-clients shaded inside) and Apache Avro come from Maven Central
  (``flink-connectors.pom.xml``, :func:`~edgestream.cloud.jvm.connector_jars`);
  :func:`~edgestream.cloud.jvm.flink_lib` is PyFlink's ``lib/`` (which has ``flink-json``) plus
  those jars, and the PyFlink gateway JVM starts with
  it as ``FLINK_LIB_DIR``: the local MiniCluster and the client see the jars as a Flink
  distribution's ``lib/`` (one copy, shared by every job of the JVM). A remote cluster must
  have them in its own ``lib/``, and its TaskManagers the same Python environment as ours
  (edgestream, pyflink): shipping the jars with the job as well fails it, because two copies
  of kafka-clients meet ("cannot assign instance of OffsetResetStrategy to field ... of type
  OffsetResetStrategy"). Python functions run in ``thread`` mode (PEMJA, in-process: the
  fast one).
* :func:`local_cluster_settings` - a local cluster listens on ``127.0.0.1`` (or
  ``$EDGESTREAM_BIND_ADDR``), its anonymous REST API takes no jars (its cancel stays: only the
  bind keeps others from it); the Python functions' gRPC servers (Beam's, PyFlink's loopback
  worker pool) bind loopback.
* :func:`kafka_table_ddl` - ``CREATE TABLE`` for a Kafka topic: value ``BYTES`` (``raw``
  format, Avro decoded by the caller) or ``json`` columns, ``partition``/``offset``/``timestamp``
  metadata, optional key column, bounded or unbounded scan.
* :func:`bounded_offsets` - ``scan.bounded.specific-offsets`` from exact end offsets
  (:func:`edgestream.core.offsets.exact_end_offsets`): never ``latest-offset``, which trusts
  ListOffsets (short on some Kafka-protocol brokers: a bounded read once stopped at 48,172
  of 50,000 records).

>>> print(kafka_table_ddl("src", "fleet.summaries", "127.0.0.1:9092", ends={0: 10, 1: 0}))
CREATE TABLE `src` (
  `v` BYTES,
  `partition` INT METADATA VIRTUAL,
  `offset` BIGINT METADATA VIRTUAL,
  `ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL
) WITH (
  'connector' = 'kafka',
  'topic' = 'fleet.summaries',
  'properties.bootstrap.servers' = '127.0.0.1:9092',
  'properties.group.id' = 'edgestream-flink',
  'scan.startup.mode' = 'earliest-offset',
  'format' = 'raw',
  'scan.bounded.mode' = 'specific-offsets',
  'scan.bounded.specific-offsets' = 'partition:0,offset:10;partition:1,offset:0'
)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgestream.cloud.jvm import flink_lib, pyflink_home

__all__ = [
    "bounded_offsets",
    "client_environ",
    "flink_env",
    "kafka_sink_ddl",
    "kafka_table_ddl",
    "local_cluster_settings",
]


#: the jars our jobs need beside PyFlink's own (Kafka connector, Avro), from Maven Central
# what a loopback Python worker leaves in its client's os.environ that misleads a process
# started from it: process mode on a local MiniCluster runs the workers as threads of the
# client, and they copy their worker environment into the client's
_LOOPBACK_WORKER_ENV = (
    "PYFLINK_GATEWAY_DISABLED",
    "PYFLINK_GATEWAY_PORT",
    "PYTHON_LOOPBACK_SERVER_ADDRESS",
)


def client_environ(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` fit for a Flink client or cluster process started from this one.

    A process that once ran a local job with process-mode Python functions keeps its loopback
    workers' environment, and its children inherit it (measured, ``edgestream up`` under
    pytest): a child's job refused to start ("It's launching the PythonGatewayServer during
    Python UDF execution": ``PYFLINK_GATEWAY_DISABLED``), and a child TaskManager's Python
    workers connected back to the parent's loopback server (``PYTHON_LOOPBACK_SERVER_
    ADDRESS``) and ran there. An empty ``JAVA_HOME`` (left by a TaskManager's worker the
    same way) makes PyFlink start ``bin/java``: it is dropped too, so ``java`` comes from
    ``PATH``.

    >>> client_environ({"PYFLINK_GATEWAY_DISABLED": "true", "JAVA_HOME": "", "A": "1"})
    {'A': '1'}
    """
    return {
        k: v
        for k, v in env.items()
        if k not in _LOOPBACK_WORKER_ENV and not (k == "JAVA_HOME" and not v.strip())
    }


def _forget_loopback_worker() -> None:
    """A process building a job is a client, never a worker: :func:`client_environ` of our
    own environment."""
    keep = client_environ(os.environ)
    for name in [k for k in os.environ if k not in keep]:
        del os.environ[name]


def _expose_site_packages() -> None:
    """Thread mode runs Python embedded in the JVM (pemja), which finds its interpreter the
    way a shell would: without an activated virtualenv it starts the base one and misses
    the venv's packages (measured: "No module named 'pemja'" when run as
    ``.venv/bin/python``). The JVM inherits our environment, so activate the venv there
    before PyFlink launches it."""
    if sys.prefix == sys.base_prefix:
        return
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "").split(os.pathsep)
    if path[:1] != [bin_dir]:
        os.environ["PATH"] = os.pathsep.join([bin_dir, *path])
    os.environ.setdefault("VIRTUAL_ENV", sys.prefix)


def _use_flink_lib() -> None:
    """Start the gateway JVM (not started yet: ``Configuration()`` starts it) with
    :func:`flink_lib`. PyFlink replaces ``FLINK_LIB_DIR`` by its own ``lib/`` unless
    ``FLINK_HOME`` is set, so that is set too (to the installed PyFlink unless given)."""
    os.environ.setdefault("FLINK_HOME", str(pyflink_home()))
    os.environ["FLINK_LIB_DIR"] = str(flink_lib())


def local_cluster_settings(bind: str | None = None) -> dict[str, str]:
    """Where a local MiniCluster listens, and what its REST API refuses.

    Its REST API and web UI bind ``127.0.0.1`` whatever ``bind`` says: the API is anonymous
    and Flink 2.0 cannot take cancelling off it (``web.cancel`` off only hides the web UI's
    button; ``PATCH /jobs/<id>?mode=cancel`` still cancels, 202, measured; only mutual TLS on
    the whole API, ``security.ssl.rest.*``, would), so beyond loopback anyone on the network
    could cancel the job. Reach the web UI from elsewhere through an SSH tunnel or an
    authenticating proxy. Jar upload and run (``web.submit``) are off too (``POST
    /jars/upload``: 400). The job and task managers' servers (blob server, RPC, data) bind
    ``bind`` (default :func:`edgestream.core.ports.bind_address`: ``127.0.0.1`` unless
    ``$EDGESTREAM_BIND_ADDR`` says otherwise); Flink's own default is every interface. Our
    job is cancelled through its job client, not REST.

    >>> s = local_cluster_settings("127.0.0.1")
    >>> s["rest.bind-address"], s["taskmanager.host"], s["web.submit.enable"]
    ('127.0.0.1', '127.0.0.1', 'false')
    >>> s = local_cluster_settings("0.0.0.0")
    >>> s["rest.bind-address"], s["rest.address"], s["taskmanager.bind-host"]
    ('127.0.0.1', '127.0.0.1', '0.0.0.0')
    """
    from edgestream.core.ports import LOOPBACK, bind_address

    bind = bind or bind_address()
    wildcard = bind in ("0.0.0.0", "::", "[::]", "*")
    reach = LOOPBACK if wildcard else bind  # how the cluster's own clients reach it
    return {
        "rest.bind-address": LOOPBACK,  # anonymous, cancel cannot be turned off: see above
        "rest.address": LOOPBACK,
        "jobmanager.bind-host": bind,
        "jobmanager.rpc.address": reach,
        "taskmanager.bind-host": bind,
        "taskmanager.host": reach,
        "web.submit.enable": "false",
        "web.cancel.enable": "false",
    }


def _python_workers_on_loopback() -> None:
    """PyFlink's loopback worker pool (the gRPC server a local cluster's Python operators start
    their Python workers through, in this process) binds ``[::]`` - every interface - and
    starts a new server each time an environment opens (two per job, seen with ``ss -ltn``).
    Its ``start`` is replaced, once per process, by one that binds ``127.0.0.1`` and keeps one
    server for the process."""
    import atexit

    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.utils import thread_pool_executor
    from pyflink.fn_execution.beam import beam_worker_pool_service as pool

    from edgestream.core.ports import LOOPBACK

    servicer = pool.BeamFnLoopbackWorkerPoolServicer
    if getattr(servicer.start, "on_loopback", False):
        return
    address: list[str] = []

    def start(self: Any) -> str:
        if not address:
            server = grpc.server(thread_pool_executor.shared_unbounded_instance())
            port = server.add_insecure_port(f"{LOOPBACK}:0")
            beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(self, server)
            server.start()
            atexit.register(server.stop, 1)
            address.append(f"{LOOPBACK}:{port}")
        self._worker_address = address[0]
        return address[0]

    start.on_loopback = True  # type: ignore[attr-defined]
    servicer.start = start


def flink_env(
    jobmanager: str | None = None, parallelism: int = 1, settings: dict[str, str] | None = None
) -> tuple[Any, Any]:
    """``(StreamExecutionEnvironment, StreamTableEnvironment)``: local MiniCluster by default
    (listening as :func:`local_cluster_settings` says), the remote cluster at ``jobmanager``
    (``HOST:PORT``) otherwise."""
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    _forget_loopback_worker()
    _expose_site_packages()
    _use_flink_lib()
    conf = Configuration()
    conf.set_string("python.execution-mode", "thread")
    conf.set_string("python.executable", sys.executable)
    conf.set_string("python.client.executable", sys.executable)
    conf.set_string("python.fn-execution.bundle.size", "5000")
    conf.set_string("taskmanager.memory.process.size", "1024m")
    if not jobmanager:
        _python_workers_on_loopback()
        for key, value in local_cluster_settings().items():
            conf.set_string(key, value)
    for key, value in (settings or {}).items():
        conf.set_string(key, value)
    if jobmanager:
        host, port = jobmanager.rsplit(":", 1)
        env = _remote_env(conf, host, int(port))
    else:
        env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(parallelism)
    return env, StreamTableEnvironment.create(env)


def _remote_env(conf: Any, host: str, port: int) -> Any:
    """A stream environment that submits to the cluster at ``host:port``.

    ``get_execution_environment`` ignores ``execution.target: remote`` when the program is
    not started by the ``flink`` CLI: it builds a local MiniCluster (found when a test ran
    against a real session cluster: the MiniCluster tried to bind the cluster's REST port).
    Java's ``createRemoteEnvironment`` is what the CLI's context environment amounts to.
    The job ships PyFlink's runtime jar (``opt/flink-python``: a Flink distribution keeps it
    out of ``lib/``), as ``flink run --python`` does."""
    import pyflink
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    runtime = sorted((Path(pyflink.__file__).parent / "opt").glob("flink-python-*.jar"))
    jars = gateway.new_array(gateway.jvm.String, len(runtime))
    for i, jar in enumerate(runtime):
        jars[i] = str(jar)
    j_env = gateway.jvm.org.apache.flink.streaming.api.environment.StreamExecutionEnvironment
    return StreamExecutionEnvironment(
        j_env.createRemoteEnvironment(host, port, conf._j_configuration, jars)
    )


def bounded_offsets(ends: dict[int, int]) -> str:
    """``scan.bounded.specific-offsets`` (and ``scan.startup.specific-offsets``) text.

    >>> bounded_offsets({1: 5, 0: 7})
    'partition:0,offset:7;partition:1,offset:5'
    """
    return ";".join(f"partition:{p},offset:{o}" for p, o in sorted(ends.items()))


def _with(options: dict[str, str]) -> str:
    return ",\n".join(f"  '{k}' = '{v}'" for k, v in options.items())


def kafka_table_ddl(
    name: str,
    topic: str,
    bootstrap: str,
    columns: list[tuple[str, str]] | None = None,
    value_format: str = "raw",
    ends: dict[int, int] | None = None,
    starts: dict[int, int] | None = None,
    group: str = "edgestream-flink",
    extra: dict[str, str] | None = None,
) -> str:
    """``CREATE TABLE`` of a Kafka source: ``columns`` (default one ``v BYTES`` for ``raw``),
    plus ``partition``/``offset``/``ts`` metadata; ``ends`` bounds the scan exactly,
    ``starts`` starts at given offsets (else the earliest)."""
    cols = [(f"`{c}`", t) for c, t in (columns or [("v", "BYTES")])]
    cols += [
        ("`partition`", "INT METADATA VIRTUAL"),
        ("`offset`", "BIGINT METADATA VIRTUAL"),
        ("`ts`", "TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL"),
    ]
    options = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": bootstrap,
        "properties.group.id": group,
        "scan.startup.mode": "earliest-offset",
        "format": value_format,
    }
    if value_format == "json":
        options["json.ignore-parse-errors"] = "true"
    if starts:
        options["scan.startup.mode"] = "specific-offsets"
        options["scan.startup.specific-offsets"] = bounded_offsets(starts)
    if ends is not None:
        options["scan.bounded.mode"] = "specific-offsets"
        options["scan.bounded.specific-offsets"] = bounded_offsets(ends)
    options.update(extra or {})
    body = ",\n".join(f"  {c} {t}" for c, t in cols)
    return f"CREATE TABLE `{name}` (\n{body}\n) WITH (\n{_with(options)}\n)"


def kafka_sink_ddl(
    name: str,
    topic: str,
    bootstrap: str,
    extra: dict[str, str] | None = None,
    headers: bool = False,
) -> str:
    """``CREATE TABLE`` of a Kafka sink of raw key + value bytes (columns ``k``, ``v``; with
    ``headers`` a third, ``MAP<STRING, BYTES>`` of record headers)."""
    options = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": bootstrap,
        "key.format": "raw",
        "key.fields": "k",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        "sink.delivery-guarantee": "at-least-once",
        "properties.linger.ms": "20",
        **(extra or {}),
    }
    cols = "  `k` BYTES,\n  `v` BYTES"
    if headers:
        cols += ",\n  `headers` MAP<STRING, BYTES> METADATA"
    return f"CREATE TABLE `{name}` (\n{cols}\n) WITH (\n{_with(options)}\n)"
