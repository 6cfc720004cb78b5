"""The project's own Flink functions in Java, built with Maven from a checked-in POM.

The JVM side of the route past Python's per-record cost (docs/benchmarks.md) is a few Java
sources in ``cloud/java`` and their ``pom.xml`` (Flink and Avro ``provided``: they are on the
Flink classpath, :func:`flink_lib`). :func:`udf_jar` runs
``mvn package`` once per content of the sources and the POM, into
``$EDGESTREAM_JARS/edgestream-flink-<digest>`` (default ``$EDGESTREAM_HOME/jars``; one build
per test session), and returns the jar's path; :func:`register_functions` declares the
functions on a table environment (``USING JAR``):

* ``decode_summary(value BYTES, registry STRING)`` (``io.edgestream.flink.DecodeSummary``): a
  Confluent-framed Avro WindowSummary as a row (``DecodeSummary.ROW``), decoded with Apache
  Avro's Java library (writer schema from the registry); a bad value gives
  ``error = '<reason>: <detail>'`` instead of failing the job.
* ``fleet_stats(src INT, partition INT, offset BIGINT, value BYTES, config STRING)``
  (``io.edgestream.flink.FleetFunction``): the fleet statistics of the cloud job, a table
  function of ``(kind, k, v, h, scope)`` rows (:mod:`edgestream.cloud.job`).

:func:`java_classpath` runs the same classes outside Flink (``FleetAnalytics.main``, tests).

:func:`loopback_jar` is one class compiled with ``javac`` against PyFlink's ``flink-python``
jar (``cloud/loopback``): Beam's gRPC server factory that binds the loopback address instead
of every interface; :func:`flink_lib` puts it ahead of flink-python.

>>> len(_digest(_sources())) == 16
True
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from edgestream.core import jars
from edgestream.core.exceptions import EdgestreamError

__all__ = [
    "CONNECTORS_POM",
    "FUNCTIONS",
    "SUMMARY_FIELDS",
    "SUMMARY_ROW",
    "JvmBuildError",
    "connector_jars",
    "flink_lib",
    "java",
    "java_classpath",
    "javac",
    "loopback_jar",
    "pyflink_home",
    "register_functions",
    "sql_string",
    "udf_jar",
]

SOURCES = Path(__file__).parent / "java"
POM = SOURCES / "pom.xml"
JAR_NAME = "edgestream-flink"
#: SQL name -> Java class of each function
FUNCTIONS = {
    "decode_summary": "io.edgestream.flink.DecodeSummary",
    "fleet_stats": "io.edgestream.flink.FleetFunction",
}


def _summary_row() -> str:
    """``DecodeSummary.ROW`` (the SQL type of ``decode_summary``), read from the Java source:
    the one place it is written."""
    source = (SOURCES / "io/edgestream/flink/DecodeSummary.java").read_text(encoding="utf-8")
    declared = source.split("String ROW = ", 1)[1].split(";", 1)[0]
    return "".join(re.findall(r'"([^"]*)"', declared))


#: the SQL type of ``decode_summary``'s row, and its field names in order
SUMMARY_ROW = _summary_row()
SUMMARY_FIELDS = re.findall(r"(?:<|, )`?(\w+)`? (?:STRING|BIGINT|DOUBLE|INT|ARRAY)", SUMMARY_ROW)


def sql_string(text: str) -> str:
    """``text`` as a SQL string literal.

    >>> sql_string("it's")
    "'it''s'"
    """
    return "'" + text.replace("'", "''") + "'"


class JvmBuildError(EdgestreamError):
    """The Java functions could not be built (no JDK, no Maven, or a compile error)."""


def javac() -> str:
    """The ``javac`` to use: ``$JAVA_HOME/bin/javac``, else the one on ``PATH``."""
    home = os.environ.get("JAVA_HOME", "").strip()
    candidates = [str(Path(home) / "bin" / "javac")] if home else []
    candidates.append(shutil.which("javac") or "")
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise JvmBuildError(
        "javac not found: the Flink functions in Java need a JDK 17+ "
        "(apt-get install openjdk-17-jdk-headless, or bash deploy/local/dev.sh setup)"
    )


def java() -> str:
    """The ``java`` next to :func:`javac`."""
    return str(Path(javac()).with_name("java"))


def java_classpath() -> str:
    """The jar of the functions and the Flink classpath they run on, as a ``-cp`` value."""
    return os.pathsep.join([str(udf_jar()), jars.classpath(flink_lib())])


def _sources() -> list[Path]:
    """What the build reads: the Java sources and the POM."""
    return sorted([*SOURCES.rglob("*.java"), POM])


def _digest(sources: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sources:
        h.update(str(path.relative_to(SOURCES)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def udf_jar(cache: Path | None = None) -> Path:
    """The jar of the Java functions, built now if this source content has no jar yet.

    ``cache`` defaults to :func:`edgestream.core.jars.cache_dir`. Safe to call from several
    processes at once: one builds (``mvn package`` into a staging folder moved in place
    whole), the others wait for it and use its jar."""

    def package(staging: Path) -> None:
        javac()  # a one-line message without a JDK, before Maven says it its own way
        argv = [jars.mvn(), "-q", "-B", "-f", str(POM), "package",
                f"-Dedgestream.build={staging / 'build'}"]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            lines = (done.stdout + done.stderr).strip().splitlines()
            errors = [line for line in lines if "ERROR" in line][:8] or lines[-8:]
            raise JvmBuildError(f"mvn package failed on {POM}: " + " | ".join(errors))
        os.replace(staging / "build" / f"{JAR_NAME}.jar", staging / f"{JAR_NAME}.jar")
        shutil.rmtree(staging / "build")

    jar, root = f"{JAR_NAME}.jar", cache or jars.cache_dir()
    return jars.build_once(root, JAR_NAME, _digest(_sources()), jar, package) / jar


LOOPBACK_SOURCES = Path(__file__).parent / "loopback"
LOOPBACK_JAR = "edgestream-beam-loopback"
#: the one class file shipped (the outer class compiled beside it is a stand-in)
LOOPBACK_CLASS = "org/apache/beam/sdk/fn/server/ServerFactory$InetSocketAddressServerFactory.class"


def loopback_jar(flink_python: Path, cache: Path | None = None) -> Path:
    """The jar of Beam's server factory bound to loopback (``cloud/loopback``), compiled
    against ``flink_python`` (PyFlink's ``opt/flink-python-*.jar``) once per content of the
    source and that jar's name, into ``cache`` (default :func:`edgestream.core.jars.cache_dir`).
    """
    sources = sorted(LOOPBACK_SOURCES.rglob("*.java"))
    h = hashlib.sha256(flink_python.name.encode())
    for path in sources:
        h.update(path.read_bytes())
    jar = f"{LOOPBACK_JAR}.jar"

    def compile_class(staging: Path) -> None:
        argv = [javac(), "-Xlint:none", "--release", "11", "-cp", str(flink_python),
                "-d", str(staging / "classes"), *map(str, sources)]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            lines = (done.stdout + done.stderr).strip().splitlines()[:8]
            raise JvmBuildError(f"javac failed on {LOOPBACK_SOURCES}: " + " | ".join(lines))
        with zipfile.ZipFile(staging / jar, "w", zipfile.ZIP_DEFLATED) as out:
            out.write(staging / "classes" / LOOPBACK_CLASS, LOOPBACK_CLASS)
        shutil.rmtree(staging / "classes")

    root = cache or jars.cache_dir()
    return jars.build_once(root, LOOPBACK_JAR, h.hexdigest()[:16], jar, compile_class) / jar


def prefetch() -> list[Path]:
    """Resolve the Flink jars and build the functions' jar now (a setup step); returns the
    folders it made ready."""
    return [flink_lib(), udf_jar().parent]


def register_functions(tenv: Any) -> Path:
    """Declare :data:`FUNCTIONS` on ``tenv`` from the jar (``USING JAR``: the jar goes to the
    client's class loader and ships with the job); returns the jar."""
    jar = udf_jar()
    for name, cls in FUNCTIONS.items():
        tenv.execute_sql(f"CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS {name} AS '{cls}' "
                         f"LANGUAGE JAVA USING JAR '{jar.as_uri()}'")  # fmt: skip
    return jar


CONNECTORS_POM = Path(__file__).with_name("flink-connectors.pom.xml")


def connector_jars() -> list[Path]:
    """The Kafka connector and Avro jars (resolved from :data:`CONNECTORS_POM` if not cached
    yet): what a remote cluster needs in its ``lib/`` besides a Flink 2.0 distribution's."""
    return sorted(jars.resolve("flink-connectors", CONNECTORS_POM).glob("*.jar"))


def pyflink_home() -> Path:
    """The installed PyFlink (its ``lib/``, ``opt/`` and ``bin/``)."""
    import pyflink

    return Path(pyflink.__file__).parent


def _flink_python_jar() -> Path:
    """PyFlink's runtime jar (``opt/flink-python-*.jar``)."""
    found = sorted((pyflink_home() / "opt").glob("flink-python-*.jar"))
    if not found:
        raise FileNotFoundError(f"no flink-python jar in {pyflink_home() / 'opt'}")
    return found[0]


def flink_lib() -> Path:
    """A Flink ``lib/`` folder: links to the installed PyFlink's ``lib/*.jar``, to
    :func:`connector_jars` and to :func:`loopback_jar` (Beam's servers of
    the Python functions on loopback: PyFlink puts ``lib/`` ahead of flink-python), kept in
    :func:`edgestream.core.jars.cache_dir` under a digest of the list (made once, moved in
    place whole). Give it to a Flink process as ``FLINK_LIB_DIR`` (the PyFlink gateway, or
    ``bin/jobmanager.sh`` of PyFlink's ``bin/``)."""
    beam = loopback_jar(_flink_python_jar())
    found = sorted([*(pyflink_home() / "lib").glob("*.jar"), *connector_jars(), beam])
    key = hashlib.sha256("\n".join(map(str, found)).encode()).hexdigest()[:12]
    target = jars.cache_dir() / f"flink-lib-{key}"
    if target.is_dir():
        return target
    staging = Path(tempfile.mkdtemp(prefix=".flink-lib-", dir=jars.cache_dir()))
    for jar in found:
        (staging / jar.name).symlink_to(jar)
    try:
        os.replace(staging, target)  # a concurrent maker's folder, if first, is the same
    except OSError:
        shutil.rmtree(staging)
    return target


if __name__ == "__main__":  # the setup step: every jar (the broker's, Flink's, our functions')
    jars.setup(prefetch)
