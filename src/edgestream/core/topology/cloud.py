"""The cloud side: Flink jobs, retraining and the rollout gates of new models."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, model_validator

from edgestream.core.topology.fields import (
    Bool,
    Duration,
    Fraction,
    Frozen,
    Number,
    PositiveDuration,
    PositiveInt,
    TopicName,
    deferrable,
    resolve_env,
)

__all__ = [
    "Cloud",
    "CloudJobs",
    "DriftJob",
    "FleetStatsJob",
    "RetrainJob",
    "Retraining",
    "Rollout",
    "Shadow",
    "Signing",
]

_HOST_PORT_RE = re.compile(r"^[A-Za-z0-9_.\-]+:(\d{1,5})$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _host_port(value: str) -> str:
    match = _HOST_PORT_RE.match(value)
    if not match or not 0 < int(match.group(1)) < 65536:
        raise ValueError("HOST:PORT of the Flink JobManager REST endpoint (e.g. flink-jm:8081)")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME_RE.match(value):
        raise ValueError("the name of an environment variable (letters, digits, '_')")
    return value


HostPort = Annotated[str, BeforeValidator(resolve_env), AfterValidator(deferrable(_host_port))]
EnvName = Annotated[str, AfterValidator(_env_name)]


class FleetStatsJob(Frozen):
    """Fleet analytics: per site, device type and fleet-wide statistics every ``window``.

    ``allowed_lateness`` is the outage budget: summaries of a gateway that was offline up to
    this long still count in their own windows (later ones are counted as late). ``worst_n``
    devices by anomaly score are listed per window. Watermarks (per partition of the cloud
    topics) trail the newest event time by ``max_out_of_orderness``; a partition silent for
    ``idle_timeout`` (processing time) no longer holds them back. The drift job uses the same.
    """

    window: PositiveDuration = 60_000
    """Length of the statistics windows (tumbling, event time)."""
    allowed_lateness: Duration = 900_000
    """The outage budget: summaries this late still count in their own windows."""
    worst_n: PositiveInt = 5
    """Devices listed per window, by anomaly score."""
    max_out_of_orderness: Duration = 30_000
    """How far a partition's watermark trails its newest event time."""
    idle_timeout: PositiveDuration = 30_000
    """A partition silent this long (processing time) stops holding watermarks back."""


class DriftJob(Frozen):
    """Drift of per-channel distributions against the model's training baseline.

    PSI over ``bins`` bins (deciles by default) above ``psi_major`` is major drift, above
    ``psi_minor`` minor; a KS statistic above ``ks_threshold`` also counts. Windows with fewer
    than ``min_samples`` readings of a device type are not judged. ``reference``: ``model``
    compares with the live model's training baseline (ModelUpdate / sidecar), ``lagged`` with
    the samples ``reference_lag`` windows earlier, ``first`` with the first full window since
    the live model went live (see :mod:`edgestream.cloud.drift`).
    """

    window: PositiveDuration = 600_000
    """Length of the drift windows of sampled readings."""
    psi_major: Number = 0.25
    """PSI above this is major drift (a retraining trigger)."""
    psi_minor: Number = 0.1
    """PSI above this is minor drift (reported)."""
    ks_threshold: Fraction = 0.2
    """A Kolmogorov-Smirnov statistic above this also counts as drift."""
    min_samples: PositiveInt = 500
    """Windows with fewer readings of a device type are not judged."""
    bins: PositiveInt = 10
    """PSI bins (deciles by default)."""
    reference: Literal["model", "lagged", "first"] = "model"
    """Compared with: the live model's training baseline, the window ``reference_lag``
    earlier, or the first full window since the live model went live."""
    reference_lag: PositiveInt = 2
    """Windows back, for ``reference: lagged``."""


class RetrainJob(Frozen):
    """Retraining triggers: drift or an anomaly rate above ``anomaly_rate_threshold`` emit one
    RetrainRequest per episode, then none for the same model for ``cooldown``. An episode
    ends after ``quiet_windows`` windows below the thresholds; the anomaly rate of a device
    type is judged in fleet-stats windows with at least ``min_readings`` readings."""

    cooldown: Duration = 3_600_000
    """No second RetrainRequest for the same model within this."""
    anomaly_rate_threshold: Fraction = 0.05
    """A device type's anomaly rate above this triggers retraining."""
    quiet_windows: PositiveInt = 2
    """Windows below the thresholds that end an episode."""
    min_readings: PositiveInt = 1_000
    """Fleet-stats windows with fewer readings of a device type are not judged."""


class CloudJobs(Frozen):
    """The Flink jobs."""

    fleet_stats: FleetStatsJob = FleetStatsJob()
    """Fleet analytics per site, device type and fleet-wide."""
    drift: DriftJob = DriftJob()
    """Drift detection on sampled readings."""
    retrain: RetrainJob = RetrainJob()
    """Retraining triggers."""


class Cloud(Frozen):
    """Cloud jobs and their topics (on the cloud broker).

    ``jobmanager`` omitted: a local Flink MiniCluster; otherwise the jobs are submitted to the
    cluster at ``HOST:PORT``.
    """

    jobs: CloudJobs = CloudJobs()
    """The Flink jobs' settings."""
    stats_topic: TopicName = "fleet.stats"
    """Fleet statistics (JSON, the last row of a key is current)."""
    retrain_topic: TopicName = "fleet.retrain"
    """RetrainRequests (CloudEvents)."""
    models_topic: TopicName = "fleet.models"
    """ModelUpdates: candidates, promotions, rollbacks."""
    dlq_topic: TopicName = "fleet.dlq"
    """Input records the jobs cannot decode, bytes untouched, with the reason."""
    parallelism: PositiveInt = 1
    """Flink parallelism of the jobs."""
    jobmanager: HostPort | None = None
    """A Flink JobManager's REST endpoint to submit to (omitted: a local MiniCluster)."""


class Signing(Frozen):
    """Where the Ed25519 keys of model signing are (never in the repository).

    The retrainer signs with the private key from ``key_file`` or the environment variable
    ``key_env``; gateways verify with ``public_key_file`` or ``public_key_env``.
    """

    key_file: Path | None = None
    """The retrainer's private key (PEM); giving it drops the default ``key_env``."""
    key_env: EnvName | None = "EDGESTREAM_SIGNING_KEY"
    """Environment variable holding the private key."""
    public_key_file: Path | None = None
    """The gateways' public key (PEM); giving it drops the default ``public_key_env``."""
    public_key_env: EnvName | None = "EDGESTREAM_SIGNING_PUBLIC_KEY"
    """Environment variable holding the public key."""

    @model_validator(mode="before")
    @classmethod
    def _file_replaces_env(cls, data: Any) -> Any:
        """Giving ``key_file`` (``public_key_file``) drops the default ``key_env``."""
        if isinstance(data, dict):
            data = dict(data)
            for prefix in ("key", "public_key"):
                if f"{prefix}_file" in data and f"{prefix}_env" not in data:
                    data[f"{prefix}_env"] = None
        return data


class Retraining(Frozen):
    """How new models are trained: family, held-out share for evaluation, signing keys."""

    trainer: Literal["isolation_forest", "autoencoder"] = "isolation_forest"
    """Not used to switch families: a retrained candidate keeps the live model's family (see
    ``edgestream.retrain.refit``); another family is trained offline and published."""
    holdout_fraction: Fraction = 0.2
    """Share of each device's readings (the last ones) held out for evaluation."""
    signing: Signing = Signing()
    """Where the signing keys are."""


class Shadow(Frozen):
    """Gates a candidate model must pass in shadow mode before promotion.

    After ``min_readings`` scored readings, the candidate's anomaly rate may differ from the
    current model's by at most ``max_anomaly_rate_delta`` and the Spearman rank correlation of
    their scores must be at least ``min_rank_correlation``; ``max_duration`` bounds the shadow
    phase (not passed by then: rolled back).
    """

    min_readings: PositiveInt = 5_000
    """Readings scored by both models before the gates are judged."""
    max_anomaly_rate_delta: Fraction = 0.02
    """Largest difference of the two models' anomaly rates."""
    min_rank_correlation: Number = 0.8
    """Smallest Spearman rank correlation of their scores."""
    max_duration: PositiveDuration = 1_800_000
    """Longest shadow phase: not passed by then, rolled back."""


class Rollout(Frozen):
    """Staged rollout of new models: canary gateways first, shadow gates, auto rollback.

    The canaries are the gateways marked ``canary: true``; when none is marked, the first
    ``ceil(canary_fraction x gateways)`` gateways in file order.
    """

    canary_fraction: Fraction = 0.25
    """Share of the gateways (the first in file order) that are canaries when none is marked."""
    shadow: Shadow = Shadow()
    """Gates a candidate must pass in shadow mode on the canaries."""
    auto_rollback: Bool = True
    """Roll a candidate back as soon as it fails the gates (else only at ``max_duration``)."""
