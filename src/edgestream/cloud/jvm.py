"""The project's own Flink functions in Java, compiled on first use.

No ``flink-avro`` jar ships with this Flink and no Maven repository is assumed, so the JVM
side of the route past Python's per-record cost (README, "Cloud jobs") is a few Java sources
in ``cloud/java`` compiled with the JDK's ``javac`` against the jars of the installed PyFlink.
:func:`udf_jar` builds the jar once per source content (cached in ``$EDGESTREAM_HOME/jvm``,
``~/.edgestream/jvm`` by default) and returns its path;
:func:`register_functions` declares the functions on a table environment (``USING JAR``):

* ``decode_summary(value BYTES, registry STRING)`` (``io.edgestream.flink.DecodeSummary``): a
  Confluent-framed Avro WindowSummary as a row (``DecodeSummary.ROW``); a bad value gives
  ``error = '<reason>: <detail>'`` instead of failing the job.
* ``fleet_stats(src INT, partition INT, offset BIGINT, value BYTES, config STRING)``
  (``io.edgestream.flink.FleetFunction``): the fleet statistics of the cloud job, a table
  function of ``(kind, k, v, h, scope)`` rows (:mod:`edgestream.cloud.job`).

:func:`java_classpath` runs the same classes outside Flink (``FleetAnalytics.main``, tests).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from edgestream.core.exceptions import EdgestreamError
from edgestream.core.paths import home_dir

__all__ = [
    "FUNCTIONS",
    "SUMMARY_FIELDS",
    "SUMMARY_ROW",
    "JvmBuildError",
    "java",
    "java_classpath",
    "javac",
    "register_functions",
    "sql_string",
    "udf_jar",
]

SOURCES = Path(__file__).parent / "java"
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
    """The Java functions could not be compiled (no JDK, or a compile error)."""


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
    """The jar of the functions and the PyFlink jars they use, as a ``-cp`` value."""
    return os.pathsep.join([str(udf_jar()), str(_pyflink_lib() / "*")])


def _pyflink_lib() -> Path:
    import pyflink

    return Path(pyflink.__file__).parent / "lib"


def _sources() -> list[Path]:
    return sorted(SOURCES.rglob("*.java"))


def _digest(sources: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sources:
        h.update(str(path.relative_to(SOURCES)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def udf_jar(cache: Path | None = None) -> Path:
    """The jar of the Java functions, compiled now if this source content has no jar yet."""
    sources = _sources()
    root = cache or home_dir() / "jvm"
    jar = root / f"edgestream-flink-{_digest(sources)}.jar"
    if jar.exists():
        return jar
    root.mkdir(parents=True, exist_ok=True)
    compiler = javac()
    with tempfile.TemporaryDirectory(prefix="edgestream-javac-") as tmp:
        classes = Path(tmp) / "classes"
        classpath = str(_pyflink_lib() / "*")
        cmd = [compiler, "--release", "17", "-nowarn", "-encoding", "UTF-8", "-cp", classpath,
               "-d", str(classes), *map(str, sources)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise JvmBuildError(f"javac failed on {SOURCES}:\n{done.stderr.strip()}")
        partial = Path(tmp) / jar.name
        _zip_classes(classes, partial)
        os.replace(partial, jar)  # atomic: a concurrent build finds a whole jar or none
    return jar


def _zip_classes(classes: Path, jar: Path) -> None:
    """A jar of the compiled classes (a zip with a manifest; no ``jar`` tool needed)."""
    import zipfile

    with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: edgestream\n\n")
        for path in sorted(classes.rglob("*.class")):
            z.write(path, path.relative_to(classes).as_posix())


def register_functions(tenv: Any) -> Path:
    """Declare :data:`FUNCTIONS` on ``tenv`` from the jar (``USING JAR``: the jar goes to the
    client's class loader and ships with the job); returns the jar."""
    jar = udf_jar()
    for name, cls in FUNCTIONS.items():
        tenv.execute_sql(f"CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS {name} AS '{cls}' "
                         f"LANGUAGE JAVA USING JAR '{jar.as_uri()}'")  # fmt: skip
    return jar
