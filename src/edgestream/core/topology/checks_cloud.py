"""Cross-reference checks of forwarding, the cloud jobs, retraining and rollout."""

from __future__ import annotations

import math

from edgestream.core.topology.fields import format_duration, unset_env
from edgestream.core.topology.models import Topology
from edgestream.core.topology.report import Loc, Report, aligned, duplicates

__all__ = ["check_cloud", "check_forwarding"]


def check_forwarding(t: Topology, r: Report, check_files: bool) -> None:
    """Drain order, roll-up levels, and a coherent security block (files exist if checked)."""
    fwd = t.forwarding
    loc: Loc = ("forwarding",)
    if sorted(fwd.priorities) != ["alerts", "summaries"] or fwd.priorities[0] != "alerts":
        r.add((*loc, "priorities"), "[alerts, summaries]: each kind once, alerts first")
    tumbling = [(i, w.size) for i, w in enumerate(t.windows) if w.tumbling]
    previous = 0
    for i, level in enumerate(fwd.rollup):
        if level <= previous or (previous and level % previous):
            r.add(
                (*loc, "rollup", i),
                f"a multiple of the previous level {format_duration(previous)} and larger",
            )
        else:
            aligned(level, tumbling, (*loc, "rollup", i), "roll-ups stay exact", r)
        previous = level
    sizes = {w.size for w in t.windows}
    for i, size in enumerate(fwd.summaries.windows or ()):
        if size not in sizes:
            known = ", ".join(format_duration(s) for s in sorted(sizes)) or "none"
            r.add((*loc, "summaries", "windows", i), f"a window size of windows: ({known})")
    sec = fwd.security
    sloc: Loc = (*loc, "security")
    if sec.protocol.startswith("SASL_") and sec.sasl is None:
        r.add(
            (*sloc, "sasl"),
            f"a sasl: block (mechanism, username, password) for protocol {sec.protocol}",
            got="nothing",
        )
    if not sec.protocol.startswith("SASL_") and sec.sasl is not None:
        r.add((*sloc, "sasl"), f"no sasl: block with protocol {sec.protocol} (use SASL_SSL)")
    tls = sec.protocol.endswith("SSL")
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(sec, name)
        if path is None:
            continue
        if not tls:
            r.add((*sloc, name), f"no TLS files with protocol {sec.protocol} (use SSL or SASL_SSL)")
        elif check_files and not unset_env(str(path)) and not t.resolve_path(path).is_file():
            r.add((*sloc, name), f"an existing file (looked for {t.resolve_path(path)})")
    if (sec.cert_file is None) != (sec.key_file is None):
        missing = "key_file" if sec.key_file is None else "cert_file"
        r.add((*sloc, missing), "cert_file and key_file together (mutual TLS)", got="nothing")


def check_cloud(t: Topology, r: Report) -> None:
    """Distinct cloud topics, drift thresholds, fleet window alignment, retraining, rollout."""
    topics: list[tuple[Loc, str]] = [
        (("forwarding", "topics", "alerts"), t.forwarding.topics.alerts),
        (("forwarding", "topics", "summaries"), t.forwarding.topics.summaries),
        (("forwarding", "topics", "samples"), t.forwarding.topics.samples),
        (("cloud", "stats_topic"), t.cloud.stats_topic),
        (("cloud", "retrain_topic"), t.cloud.retrain_topic),
        (("cloud", "models_topic"), t.cloud.models_topic),
        (("cloud", "dlq_topic"), t.cloud.dlq_topic),
    ]
    for index, first in duplicates([name for _, name in topics]):
        other = ".".join(str(p) for p in topics[first][0])
        r.add(topics[index][0], f"a cloud topic of its own ({other} uses it too)")
    jobs = t.cloud.jobs
    drift: Loc = ("cloud", "jobs", "drift")
    if jobs.drift.psi_major <= 0:
        r.add((*drift, "psi_major"), "a PSI threshold > 0")
    if not 0 < jobs.drift.psi_minor < jobs.drift.psi_major:
        r.add((*drift, "psi_minor"), f"0 < psi_minor < psi_major ({jobs.drift.psi_major:g})")
    if jobs.drift.bins < 2:
        r.add((*drift, "bins"), "at least 2 bins (10 = deciles)")
    tumbling = [(i, w.size) for i, w in enumerate(t.windows) if w.tumbling]
    stats_loc: Loc = ("cloud", "jobs", "fleet_stats", "window")
    aligned(jobs.fleet_stats.window, tumbling, stats_loc, "fleet windows hold whole summaries", r)
    holdout = t.retraining.holdout_fraction
    if not 0 < holdout < 1:
        r.add(("retraining", "holdout_fraction"), "a fraction strictly between 0 and 1")
    signing = t.retraining.signing
    for prefix in ("key", "public_key"):
        file, env = f"{prefix}_file", f"{prefix}_env"
        given = [n for n in (file, env) if getattr(signing, n) is not None]
        if len(given) != 1:
            got = f"{file} and {env} both set" if given else f"neither {file} nor {env}"
            r.add(("retraining", "signing"), f"exactly one of {file} or {env}", got=got)
    rollout = t.rollout
    if rollout.canary_fraction <= 0:
        r.add(("rollout", "canary_fraction"), "a fraction > 0 and <= 1")
    corr = rollout.shadow.min_rank_correlation
    if not -1 <= corr <= 1 or math.isnan(corr):
        r.add(("rollout", "shadow", "min_rank_correlation"), "a correlation between -1 and 1")
