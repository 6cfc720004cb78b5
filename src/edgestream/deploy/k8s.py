"""Kubernetes manifests of a topology: gateway StatefulSets, the topology ConfigMap, Secret
references and a FlinkDeployment (Flink Kubernetes Operator, ``flink.apache.org/v1beta1``)
running the PyFlink cloud jobs.

* ``configmap.yaml``: the topology file as written (its ``${VAR}`` references intact) and the
  model files it names (ONNX + sidecar, as ``binaryData``), mounted so that the topology's
  relative model paths resolve inside the pods exactly as next to the file.
* ``gateway-<id>.yaml``: per gateway a headless Service and a StatefulSet of one pod with the
  edge worker and the forwarder (one PersistentVolumeClaim for the RocksDB window state and the
  SQLite outbox, sized from ``forwarding.outbox.max_bytes`` + 1 GiB) and, for a gateway without
  ``bootstrap``, an Apache Kafka broker as a sidecar (``--broker-image``, data on the
  gateway's volume).
* ``flinkdeployment.yaml``: the cloud jobs (``edgestream cloud run``) through Flink's
  ``PythonDriver``, parallelism ``cloud.parallelism``, ``last-state`` upgrades. The image
  (``--image``, a Flink 2.0.1 image with edgestream installed) must carry the Kafka connector
  and Avro jars from Maven Central (``edgestream.cloud.jvm.connector_jars()``) in
  ``/opt/flink/lib``.

Secrets are never written: every ``${VAR}`` of the topology and the signing key variables
become ``env`` entries with a ``secretKeyRef`` into the Secret ``<name>-env`` (key = variable
name), TLS files of ``forwarding.security`` a volume from the Secret ``<name>-tls``. Create
both with ``kubectl create secret generic ...`` before applying.
"""

from __future__ import annotations

import base64
import hashlib
import math
import posixpath
import re
from pathlib import Path
from typing import Any

import yaml

from edgestream.core.commands import MAIN, cloud_run, edge_run, forward_run
from edgestream.core.topology import Topology
from edgestream.deploy.exceptions import DeployError
from edgestream.deploy.plan import env_references
from edgestream.deploy.render import write_files

__all__ = ["FLINK_VERSION", "K8sOptions", "manifests", "write_manifests"]

FLINK_VERSION = "v2_0"  # apache-flink 2.0.1 (the operator's FlinkVersion enum value)
PYFLINK_JAR = "local:///opt/flink/opt/flink-python-2.0.1.jar"
CONFIG_DIR = "/etc/edgestream/topology"  # the topology file's folder inside the pods
DATA_DIR = "/var/lib/edgestream"
KAFKA_DATA = "/var/lib/kafka/data"
BROKER_IMAGE = "apache/kafka:4.4.0"  # the Apache Kafka project image, as the embedded broker
_MAX_CONFIGMAP = 900_000  # Kubernetes limits a ConfigMap to 1 MiB


class _NoAliases(yaml.SafeDumper):
    """Write shared lists and dicts in full (no ``&id001`` anchors) for readable manifests."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


class K8sOptions:
    """Images and names of the generated objects."""

    def __init__(
        self,
        image: str = "edgestream:0.1.0",
        broker_image: str = BROKER_IMAGE,
        namespace: str | None = None,
        registry: str = "http://schema-registry:8081",
        cloud_bootstrap: str = "kafka:9092",
        service_account: str = "flink",
    ) -> None:
        self.image, self.broker_image, self.namespace = image, broker_image, namespace
        self.registry, self.cloud_bootstrap = registry, cloud_bootstrap
        self.service_account = service_account


def _edge_broker_env(gateway_id: str) -> dict[str, str]:
    """Settings of a gateway's Kafka sidecar (the image turns ``KAFKA_*`` into properties).

    >>> _edge_broker_env("gw-1")["KAFKA_PROCESS_ROLES"]
    'broker,controller'
    """
    raw = hashlib.sha256(f"edgestream|{gateway_id}".encode()).digest()[:16]
    cluster_id = "k" + base64.urlsafe_b64encode(raw).decode().rstrip("=")[1:]
    return {
        "CLUSTER_ID": cluster_id,
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://0.0.0.0:9092,CONTROLLER://localhost:9093",
        "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://localhost:9092",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_LOG_DIRS": KAFKA_DATA,
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_HEAP_OPTS": "-Xmx256m -Xms64m",
    }


def _dns(name: str) -> str:
    """A DNS-1123 label from ``name``."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return label[:63].rstrip("-") or "edgestream"


def _meta(name: str, opts: K8sOptions, topology: Topology, component: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": _labels(topology, component)}
    if opts.namespace:
        meta["namespace"] = opts.namespace
    return meta


def _labels(topology: Topology, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "edgestream",
        "app.kubernetes.io/instance": _dns(topology.name),
        "app.kubernetes.io/component": component,
    }


def _env(topology: Topology, secret: str, exclude: tuple[str, ...] = ()) -> list[dict]:
    return [
        {
            "name": name,
            "valueFrom": {"secretKeyRef": {"name": secret, "key": name, "optional": optional}},
        }
        for name, optional in sorted(env_references(topology).items())
        if name not in exclude
    ]


def _model_files(topology: Topology) -> list[tuple[str, Path]]:
    """(path as written in the topology, file) of each model file and its JSON sidecar."""
    files = []
    for spec in topology.models.values():
        if spec.path is None:  # kind: online, no file
            continue
        written = str(spec.path)
        real = topology.resolve_path(spec.path)
        files.append((written, real))
        sidecar = real.with_suffix(".json")
        if sidecar.exists():
            files.append((str(Path(written).with_suffix(".json")), sidecar))
    return files


def _config_map(topology: Topology, opts: K8sOptions, name: str) -> tuple[dict, list, list]:
    """The ConfigMap, its volumes and their mounts."""
    assert topology.source is not None
    data = {"topology.yaml": topology.source.read_text(encoding="utf-8")}
    binary: dict[str, str] = {}
    dirs: dict[str, list[dict[str, str]]] = {}
    for written, real in _model_files(topology):
        if not real.exists():
            raise DeployError(f"model file {real} (models: {written}) does not exist")
        inside = posixpath.normpath(posixpath.join(CONFIG_DIR, written))
        key = posixpath.basename(inside)
        while key in binary:  # two models of the same file name in different folders
            key = "_" + key
        binary[key] = base64.b64encode(real.read_bytes()).decode()
        dirs.setdefault(posixpath.dirname(inside), []).append(
            {"key": key, "path": posixpath.basename(inside)}
        )
    size = sum(len(v) for v in binary.values()) + len(data["topology.yaml"])
    if size > _MAX_CONFIGMAP:
        raise DeployError(
            f"topology + model files are {size} bytes, over a ConfigMap's 1 MiB: bake the "
            "models into the image and reference them by absolute path"
        )
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(f"{name}-topology", opts, topology, "config"),
        "data": data,
        "binaryData": binary,
    }
    volumes = [
        {
            "name": "topology",
            "configMap": {
                "name": f"{name}-topology",
                "items": [{"key": "topology.yaml", "path": "topology.yaml"}],
            },
        }
    ]
    mounts = [{"name": "topology", "mountPath": CONFIG_DIR, "readOnly": True}]
    for i, (folder, items) in enumerate(sorted(dirs.items())):
        if folder == CONFIG_DIR:
            volumes[0]["configMap"]["items"] += items
            continue
        volumes.append(
            {"name": f"models-{i}", "configMap": {"name": f"{name}-topology", "items": items}}
        )
        mounts.append({"name": f"models-{i}", "mountPath": folder, "readOnly": True})
    sec = topology.forwarding.security
    tls = [p for p in (sec.ca_file, sec.cert_file, sec.key_file) if p is not None]
    if tls:
        folders = {
            posixpath.dirname(posixpath.normpath(posixpath.join(CONFIG_DIR, str(p)))) for p in tls
        }
        if len(folders) > 1:
            raise DeployError("forwarding.security files must share one folder for Kubernetes")
        items = [{"key": Path(p).name, "path": Path(p).name} for p in tls]
        volumes.append({"name": "tls", "secret": {"secretName": f"{name}-tls", "items": items}})
        mounts.append({"name": "tls", "mountPath": folders.pop(), "readOnly": True})
    return cm, volumes, mounts


def _gateway_containers(
    topology: Topology, gateway_id: str, opts: K8sOptions, name: str, mounts: list
) -> list[dict]:
    """The gateway pod's containers: its worker, its forwarder, and its broker when the
    topology gives the gateway no ``bootstrap``."""
    gateway = topology.gateway(gateway_id)
    topo = f"{CONFIG_DIR}/topology.yaml"
    edge = gateway.bootstrap or "localhost:9092"
    cloud = None if topology.forwarding.bootstrap else opts.cloud_bootstrap
    registry = None if topology.registry else opts.registry
    data_mount = {"name": "data", "mountPath": DATA_DIR}
    env = _env(topology, f"{name}-env")
    resources = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}
    containers = [
        {
            "name": "edge-worker",
            "image": opts.image,
            "args": edge_run(
                topo, gateway_id, bootstrap=edge, registry=registry, data_dir=DATA_DIR
            ),
            "env": env,
            "volumeMounts": [*mounts, data_mount],
            "resources": resources,
        },
        {
            "name": "forwarder",
            "image": opts.image,
            "args": forward_run(
                topo,
                gateway_id,
                edge_bootstrap=edge,
                cloud_bootstrap=cloud,
                registry=registry,
                data_dir=DATA_DIR,
            ),
            "env": env,
            "volumeMounts": [*mounts, data_mount],
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        },
    ]
    if gateway.bootstrap is None:
        containers.insert(
            0,
            {
                "name": "edge-broker",
                "image": opts.broker_image,
                # the official Apache Kafka image in KRaft combined mode, data on the gateway's
                # volume so alerts and readings survive a pod restart
                "env": [{"name": k, "value": v} for k, v in _edge_broker_env(gateway_id).items()],
                "ports": [{"containerPort": 9092, "name": "kafka"}],
                "volumeMounts": [{"name": "data", "mountPath": KAFKA_DATA, "subPath": "kafka"}],
                "resources": {
                    "requests": {"cpu": "100m", "memory": "384Mi"},
                    "limits": {"memory": "512Mi"},
                },
            },
        )
    return containers


def _gateway(
    topology: Topology, gateway_id: str, opts: K8sOptions, name: str, volumes: list, mounts: list
) -> list[dict]:
    full = f"{name}-{_dns(gateway_id)}"
    containers = _gateway_containers(topology, gateway_id, opts, name, mounts)
    storage = math.ceil(topology.forwarding.outbox.max_bytes / 2**30) + 1
    labels = {**_labels(topology, "gateway"), "edgestream.io/gateway": _dns(gateway_id)}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**_meta(full, opts, topology, "gateway"), "labels": labels},
        "spec": {
            "clusterIP": "None",
            "selector": labels,
            "ports": [{"name": "kafka", "port": 9092}],
        },
    }
    stateful = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {**_meta(full, opts, topology, "gateway"), "labels": labels},
        "spec": {
            "serviceName": full,
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"edgestream.io/topology-fingerprint": topology.fingerprint()},
                },
                "spec": {
                    "containers": containers,
                    "volumes": volumes,
                    "terminationGracePeriodSeconds": 30,
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": f"{storage}Gi"}},
                    },
                }
            ],
        },
    }
    return [service, stateful]


def _flink(topology: Topology, opts: K8sOptions, name: str, volumes: list, mounts: list) -> dict:
    topo = f"{CONFIG_DIR}/topology.yaml"
    parallelism = topology.cloud.parallelism
    args = ["-pyclientexec", "/usr/local/bin/python3", "-pym", MAIN, *cloud_run(topo)]
    main = {
        "name": "flink-main-container",
        "env": _env(topology, f"{name}-env"),
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "flink.apache.org/v1beta1",
        "kind": "FlinkDeployment",
        "metadata": _meta(f"{name}-cloud-jobs", opts, topology, "cloud-jobs"),
        "spec": {
            "image": opts.image,
            "flinkVersion": FLINK_VERSION,
            "serviceAccount": opts.service_account,
            "flinkConfiguration": {
                "taskmanager.numberOfTaskSlots": str(parallelism),
                "execution.checkpointing.interval": "30s",
                "state.backend.type": "rocksdb",
                "python.executable": "/usr/local/bin/python3",
            },
            "podTemplate": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "pod-template"},
                "spec": {"containers": [main], "volumes": volumes},
            },
            "jobManager": {"replicas": 1, "resource": {"cpu": 0.5, "memory": "1024m"}},
            "taskManager": {"resource": {"cpu": 1.0, "memory": "2048m"}},
            "job": {
                "jarURI": PYFLINK_JAR,
                "entryClass": "org.apache.flink.client.python.PythonDriver",
                "args": args,
                "parallelism": parallelism,
                "upgradeMode": "last-state",
                "state": "running",
            },
        },
    }


def manifests(topology: Topology, opts: K8sOptions | None = None) -> dict[str, list[dict]]:
    """File name -> the Kubernetes objects in it."""
    opts = opts or K8sOptions()
    if topology.source is None:
        raise DeployError("Kubernetes manifests need a topology loaded from a file")
    name = _dns(f"edgestream-{topology.name}")
    cm, volumes, mounts = _config_map(topology, opts, name)
    files: dict[str, list[dict]] = {"configmap.yaml": [cm]}
    for gateway in topology.gateways:
        files[f"gateway-{_dns(gateway.id)}.yaml"] = _gateway(
            topology, gateway.id, opts, name, volumes, mounts
        )
    files["flinkdeployment.yaml"] = [_flink(topology, opts, name, volumes, mounts)]
    return files


def write_manifests(topology: Topology, out_dir: Path, opts: K8sOptions | None = None) -> dict:
    """Write :func:`manifests` into ``out_dir``; file -> "created" / "changed" / "unchanged"."""
    texts = {
        file: yaml.dump_all(objects, Dumper=_NoAliases, sort_keys=False, width=100)
        for file, objects in manifests(topology, opts).items()
    }
    return write_files(out_dir, texts)
