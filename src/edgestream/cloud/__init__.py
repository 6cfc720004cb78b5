"""Cloud jobs: fleet analytics, drift detection and retraining triggers (PyFlink).

The fleet statistics run in the JVM (Java sources in ``java/``, compiled on first use by
:mod:`.jvm`); drift and retraining triggers are plain Python (:mod:`.drift`, :mod:`.triggers`,
combined in :mod:`.engine`); :mod:`.job` wires both into one Flink job and :mod:`.flink` holds
the environment and Kafka-table helpers (shared with the SQL query layer). Entry point:
:func:`run_jobs` (``edgestream cloud run``; ``edgestream up`` runs it in a thread).
"""

from edgestream.cloud.job import run_jobs

__all__ = ["run_jobs"]
