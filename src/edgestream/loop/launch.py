"""What the loop starts: a scaled copy of the topology, per gateway a worker and a
forwarder, the cloud services, and the ephemeral signing keys they share (by environment
variable). Each is a :class:`~edgestream.loop.procs.Managed` process, not yet started.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edgestream.core.commands import cloud_run, edge_run, forward_run, retrain_serve
from edgestream.core.exceptions import EdgestreamError
from edgestream.core.topology import Topology
from edgestream.loop.procs import Managed
from edgestream.loop.state import GatewayState, LoopState
from edgestream.wire.topics import FLEET


def scaled_topology(path: Path, gateways: int, run_dir: Path) -> Path:
    """A copy of the topology at ``path`` with ``gateways`` gateways (the first N; past its
    own, copies of its last gateway named ``gw-<n>``), written into ``run_dir``."""
    import yaml

    if gateways < 1:
        raise EdgestreamError(f"--gateways must be >= 1 (got {gateways})")
    raw = yaml.safe_load(path.read_text())
    listed = list(raw.get("gateways") or [])
    if not listed:
        raise EdgestreamError(f"{path}: no gateways to scale: add one under `gateways:`")
    out = listed[:gateways]
    while len(out) < gateways:
        extra = {**listed[-1], "id": f"gw-{len(out) + 1}", "canary": False}
        extra.pop("bootstrap", None)
        out.append(extra)
    raw["gateways"] = out
    for model in (raw.get("models") or {}).values():  # paths are relative to the topology
        if isinstance(model, dict) and model.get("path"):
            model["path"] = str((path.parent / model["path"]).resolve())
    scaled = run_dir / f"topology-{gateways}gw.yaml"
    scaled.write_text(yaml.safe_dump(raw, sort_keys=False))
    return scaled


def worker(
    topology: Path, gw: GatewayState, registry: str, run_dir: Path, env: dict[str, str]
) -> Managed:
    args = edge_run(topology, gw.name, bootstrap=gw.bootstrap, registry=registry,
                    data_dir=run_dir / gw.name)  # fmt: skip
    public = {k: v for k, v in env.items() if k == PUBLIC_KEY_ENV}
    return Managed(
        f"{gw.name} worker", args, run_dir / f"{gw.name}-worker.log", run_dir / gw.name, "edge",
        env=public,
    )  # fmt: skip


def forwarder(
    topology: Path, gw: GatewayState, cloud: str, registry: str, run_dir: Path
) -> Managed:
    args = forward_run(topology, gw.name, edge_bootstrap=gw.bootstrap, cloud_bootstrap=cloud,
                       registry=registry, data_dir=run_dir / gw.name,
                       loglevel="warning")  # fmt: skip
    log = run_dir / f"{gw.name}-forwarder.log"
    return Managed(f"{gw.name} forwarder", args, log, run_dir / gw.name, "forward")


PRIVATE_KEY_ENV, PUBLIC_KEY_ENV = "EDGESTREAM_SIGNING_KEY", "EDGESTREAM_SIGNING_PUBLIC_KEY"


def signing_env(run_dir: Path) -> dict[str, str]:
    """An ephemeral Ed25519 key pair in the run dir, as the PEM environment variables the
    default topology's ``retraining.signing`` names (empty when signing is not installed)."""
    if importlib.util.find_spec("edgestream.ml.signing") is None:
        return {}
    from edgestream.ml.signing import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, generate_key_pair

    keys = run_dir / "keys"  # a re-used run dir keeps its pair (gateways verify with it)
    private, public = keys / PRIVATE_KEY_FILE, keys / PUBLIC_KEY_FILE
    if not (private.exists() and public.exists()):
        private, public = generate_key_pair(keys)
    return {PRIVATE_KEY_ENV: private.read_text(), PUBLIC_KEY_ENV: public.read_text()}


def services(
    topology: Path,
    cloud: str,
    registry: str,
    run_dir: Path,
    keys: dict[str, str],
    state: LoopState,
) -> list[tuple[str, Managed]]:
    """The cloud side: Flink jobs (``edgestream cloud run``) and the retrainer (``edgestream
    retrain serve``), each only when its module is installed (else noted in ``missing``)."""
    out = []
    if importlib.util.find_spec("edgestream.cli.cloud") is not None:
        args = cloud_run(topology, cloud_bootstrap=cloud, registry=registry)
        data = run_dir / "cloud"
        out.append(
            ("cloud jobs", Managed("cloud jobs", args, run_dir / "cloud.log", data, "cloud"))
        )
    else:
        state.missing.append("cloud jobs (edgestream cloud run: not installed)")
    if importlib.util.find_spec("edgestream.cli.retrain") is not None and keys:
        args = retrain_serve(topology, cloud_bootstrap=cloud, registry=registry)
        env = {PRIVATE_KEY_ENV: keys[PRIVATE_KEY_ENV]}
        log, data = run_dir / "retrainer.log", run_dir / "retrainer"
        out.append(("retrainer", Managed("retrainer", args, log, data, "retrain", env=env)))
    else:
        state.missing.append("retrainer (edgestream retrain serve: not installed)")
    return out


def cloud_topics(topology: Topology) -> dict[str, str]:
    fwd, cloud = topology.forwarding.topics, topology.cloud
    return {
        "alerts": fwd.alerts,
        "summaries": fwd.summaries,
        "rollout": str(getattr(fwd, "rollout", FLEET["rollout"])),
        "retrain": cloud.retrain_topic,
        "models": cloud.models_topic,
        "stats": cloud.stats_topic,
    }
