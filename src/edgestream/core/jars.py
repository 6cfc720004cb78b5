"""Java artifacts from Maven Central, resolved from a checked-in POM into a local cache.

Every JVM part of edgestream (the embedded Kafka broker, the Flink connector and our Flink
functions) declares its jars in a ``pom.xml`` shipped with the package. :func:`resolve` runs
``mvn dependency:copy-dependencies`` once per POM content and keeps the jars in
``$EDGESTREAM_JARS`` (default ``$EDGESTREAM_HOME/jars``) under ``<name>-<digest of the POM>``;
later calls only look at the folder. Maven's own repository (``~/.m2``) is the second cache,
so a new ``EDGESTREAM_HOME`` costs one Maven run (~5 s), not a download.

>>> digest(Path(__file__).with_name("kafka-broker.pom.xml"))[:4].isalnum()
True
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from edgestream.core.exceptions import ServiceUnavailable
from edgestream.core.paths import home_dir

__all__ = [
    "ENV_CACHE",
    "KAFKA_POM",
    "MavenNotFound",
    "build_once",
    "cache_dir",
    "classpath",
    "digest",
    "install",
    "kafka_home",
    "locked",
    "mvn",
    "resolve",
    "setup",
]

ENV_CACHE = "EDGESTREAM_JARS"


class MavenNotFound(ServiceUnavailable):
    """``mvn`` is needed to resolve jars and is not installed."""


def cache_dir() -> Path:
    """Where resolved jars are kept: ``$EDGESTREAM_JARS`` or ``$EDGESTREAM_HOME/jars``."""
    override = os.environ.get(ENV_CACHE, "").strip()
    return Path(override).expanduser() if override else home_dir() / "jars"


def digest(pom: Path) -> str:
    """A short digest of a POM's content: a changed POM resolves into a new folder."""
    return hashlib.sha256(pom.read_bytes()).hexdigest()[:12]


def mvn() -> str:
    """The ``mvn`` executable, or a one-line error saying how to get it."""
    found = shutil.which("mvn")
    if found:
        return found
    raise MavenNotFound(
        "Maven (mvn) not found: it resolves the Kafka and Flink jars from Maven Central; run "
        "`bash deploy/local/dev.sh setup` (installs it with apt) or `apt-get install maven`"
    )


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive file lock on ``path`` (created if missing) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_once(root: Path, name: str, key: str, marker: str, build: Callable[[Path], None]) -> Path:
    """The folder ``<root>/<name>-<key>``, made by ``build(staging)`` unless it holds ``marker``.

    ``build`` fills an empty staging folder (``marker`` among what it writes), which is then
    moved in place whole (:func:`install`). Safe to call from several processes at once: one
    builds under a lock, the others wait for it and use its folder.
    """
    target = root / f"{name}-{key}"
    if (target / marker).exists():
        return target
    with locked(root / f".{name}.lock"):
        if (target / marker).exists():
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        try:
            build(staging)
            install(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve(name: str, pom: Path, *, scope: str = "runtime") -> Path:
    """The folder holding ``pom``'s dependencies (jars), resolved now if not cached yet.

    ``scope`` is Maven's ``includeScope`` (``runtime``: what the program needs to run).
    Safe to call from several processes at once: one resolves, the others wait for it.
    """

    def copy_dependencies(staging: Path) -> None:
        argv = [mvn(), "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}", f"-DincludeScope={scope}"]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            raise ServiceUnavailable(
                f"Maven could not resolve the jars of {pom.name} (is Maven Central "
                f"reachable?): {' | '.join(tail)}"
            )
        (staging / ".complete").write_text(pom.name + "\n")

    return build_once(cache_dir(), name, digest(pom), ".complete", copy_dependencies)


def install(staging: Path, target: Path) -> None:
    """Put the finished folder ``staging`` in place of ``target`` in one rename (call under
    :func:`locked`): readers find the whole folder or none."""
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)


def classpath(folder: Path) -> str:
    """A ``-cp`` value of every jar in ``folder``.

    >>> classpath(Path("/x"))
    '/x/*'
    """
    return str(folder / "*")


KAFKA_POM = Path(__file__).with_name("kafka-broker.pom.xml")


def kafka_home() -> Path:
    """The folder of the Kafka broker's jars (resolved from Maven Central on first use)."""
    return resolve("kafka", KAFKA_POM)


def setup(*more: Callable[[], list[Path]]) -> list[Path]:
    """Resolve the Kafka broker's jars, then run ``more``: the jar steps of the packages above
    core, which pass them in (``python -m edgestream.cloud.jvm`` is the setup step of every
    jar). Prints each folder made ready; returns them."""
    done = [kafka_home()]
    for step in more:
        done += step()
    for folder in done:
        print(f"jars ready: {folder} ({len(list(folder.glob('*.jar')))} jars)")
    return done


if __name__ == "__main__":  # the broker's jars only
    setup()
