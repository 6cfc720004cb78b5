"""Pure pieces of the cloud job: triggers, drift references, CLI errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from edgestream.cloud.drift import DriftMonitor, ModelInfo
from edgestream.cloud.triggers import Triggers
from edgestream.ml.drift import channel_drift, training_baseline


def test_cooldown_silences_a_new_episode_and_a_later_one_fires():
    t = Triggers(cooldown_ms=10 * 60_000, quiet_windows=1)
    key = ("m", "device_type", "pump")
    fired = [t.observe(key, s * 60_000, (s + 1) * 60_000, s in (1, 3, 20)) for s in range(25)]
    assert [f for f in fired if f] == ["m|device_type|pump|60000", "m|device_type|pump|1200000"]
    assert t.stats["cooldown"] == 1


def test_model_reference_follows_promoted_model_baseline():
    rng = np.random.default_rng(0)
    old = {b["channel"]: b for b in training_baseline(["x"], rng.normal(0, 1, (5000, 1)))}
    new_base = training_baseline(["x"], rng.normal(5, 1, (5000, 1)))
    mon = DriftMonitor(
        1000,
        {"pump": ("x",)},
        {"pump": ModelInfo("m", "v1", None, old)},
        min_samples=100,
        ks_threshold=0.2,
    )

    def window(start):
        for i, v in enumerate(rng.normal(5, 1, 300)):
            mon.add_sample(
                {"device_type": "pump", "ts": start + i, "channels": {"x": float(v)}}, 0, start + i
            )

    window(0)
    assert mon.advance(999)[0].severity == "major"  # against v1's baseline
    mon.add_model_update(
        {
            "model_name": "m",
            "version": "v2",
            "action": "candidate",
            "device_type": "pump",
            "sha256": "ab",
            "baseline": new_base,
        }
    )
    mon.add_model_update({"model_name": "m", "version": "v2", "action": "promote"})
    window(1000)
    (verdict,) = mon.advance(1999)
    assert (
        verdict.severity is None and verdict.model.version == "v2" and verdict.model.sha256 == "ab"
    )


def test_small_windows_are_not_judged():
    base = {b["channel"]: b for b in training_baseline(["x"], np.arange(1000.0).reshape(-1, 1))}
    mon = DriftMonitor(
        1000, {"pump": ("x",)}, {"pump": ModelInfo("m", "v1", None, base)}, min_samples=50
    )
    for i in range(49):
        mon.add_sample({"device_type": "pump", "ts": i, "channels": {"x": 5000.0}}, 0, i)
    (verdict,) = mon.flush()
    assert verdict.severity == "unjudged" and "min_samples" in verdict.note


def test_psi_and_ks_of_a_shifted_normal():
    rng = np.random.default_rng(1)
    (base,) = training_baseline(["x"], rng.normal(0, 1, (20_000, 1)))
    psi_same, ks_same, _ = channel_drift(base, rng.normal(0, 1, 5000))
    psi_shift, ks_shift, _ = channel_drift(base, rng.normal(1, 1, 5000))
    assert psi_same < 0.01 and ks_same < 0.03
    assert psi_shift > 0.25 and 0.3 < ks_shift < 0.45  # true KS of N(0,1) vs N(1,1): 0.383


def test_cloud_run_without_a_stack_says_what_to_start(capsys):
    from edgestream.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["cloud", "run", "topologies/default.yaml"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "edgestream stack start" in err and len(err.strip().splitlines()) <= 2


@pytest.mark.integration
def test_a_job_starts_in_a_child_of_a_process_that_ran_loopback_workers():
    """Process-mode Python functions on a local MiniCluster run as threads of the client and
    copy their worker environment into it; a child process inherits it (how ``edgestream up``
    under pytest lost its cloud job). A client must start its gateway regardless."""
    code = (
        "from edgestream.cloud.flink import flink_env; env, _ = flink_env(); "
        "print('parallelism', env.get_parallelism())"
    )
    leaked = {"PYFLINK_GATEWAY_DISABLED": "true", "PYTHON_LOOPBACK_SERVER_ADDRESS": "localhost:1"}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **leaked}, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "parallelism 1" in done.stdout


def test_a_planner_thread_error_declares_the_job_again_and_others_fail(monkeypatch):
    """Our reaction to Flink's ``metadataHandlerProvider`` NPE (a py4j thread without
    Calcite's provider, nothing submitted): declare the job again; any other error, or the
    NPE on every attempt, is raised."""
    import gc

    from edgestream.cloud import job

    class Statements:
        def execute(self):
            return "submitted"

    errors: list[Exception] = []

    def build(config):
        assert not gc.isenabled(), "the cyclic collector is paused while the job is declared"
        if errors:
            raise errors.pop(0)
        return None, Statements()

    monkeypatch.setattr(job, "ensure_cloud_topics", lambda topology, bootstrap, name: None)
    monkeypatch.setattr(job, "build_job", build)
    config = job.CloudJobConfig(None, "", "")
    npe = RuntimeError("java.lang.NullPointerException: metadataHandlerProvider")
    errors[:] = [npe, npe]
    assert job.start_job(config) == "submitted" and errors == []
    assert gc.isenabled()
    errors[:] = [npe, npe, npe]
    with pytest.raises(RuntimeError, match="metadataHandlerProvider"):
        job.start_job(config)
    errors[:] = [ValueError("nothing to read")]
    with pytest.raises(ValueError, match="nothing to read"):
        job.start_job(config)
    assert gc.isenabled()
