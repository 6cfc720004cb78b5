"""Cloud jobs: fleet analytics, drift detection and retraining triggers (PyFlink).

The logic is plain Python (:mod:`.stats`, :mod:`.drift`, :mod:`.triggers`, combined in
:mod:`.engine`); :mod:`.job` wires it into one Flink job and :mod:`.flink` holds the
environment and Kafka-table helpers (shared with the SQL query layer). Entry point:
:func:`run_jobs` (``edgestream cloud run``; ``edgestream up`` runs it in a thread).
"""

from edgestream.cloud.job import run_jobs

__all__ = ["run_jobs"]
