"""Kubernetes manifests: valid against the Kubernetes schemas (kubernetes-validate, strict)
and, for the FlinkDeployment, against the operator's CRD structure (tests/data)."""

from __future__ import annotations

import base64
import json
import posixpath
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from edgestream.core.paths import topologies_dir
from edgestream.core.topology import load_topology
from edgestream.deploy import K8sOptions, manifests, write_manifests
from edgestream.deploy.k8s import CONFIG_DIR
from tests.support.cli import run_cli
from tests.support.deploy import ENV, EXAMPLES

pytestmark = pytest.mark.usefixtures("example_env")

K8S_VERSION = "1.30"
CRD_SCHEMA = Path(__file__).parents[1] / "data" / "flink-operator"
SECRETS = ("factory-s3cret-value", "cold-s3cret-value")


def _crd_schema() -> dict:
    return json.loads((CRD_SCHEMA / "flinkdeployment-v1beta1-spec.schema.json").read_text())


def _objects(name: str) -> list[dict]:
    files = manifests(load_topology(topologies_dir() / name))
    return [obj for objs in files.values() for obj in objs]


@pytest.mark.parametrize("name", EXAMPLES)
def test_manifests_validate(name: str) -> None:
    objects = _objects(name)
    kinds = [o["kind"] for o in objects]
    assert kinds.count("StatefulSet") == len(load_topology(topologies_dir() / name).gateways)
    assert kinds.count("FlinkDeployment") == 1 and kinds.count("ConfigMap") == 1
    for obj in objects:
        if obj["kind"] == "FlinkDeployment":
            jsonschema.validate(obj, _crd_schema())
            pod = obj["spec"]["podTemplate"]
            kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_crd_check_can_fail() -> None:
    (flink,) = [o for o in _objects("default.yaml") if o["kind"] == "FlinkDeployment"]
    schema = _crd_schema()
    for path, value in [
        (("spec", "job", "upgradeMod"), "stateless"),  # misspelt field
        (("spec", "flinkVersion"), "2.0"),
        (("spec", "jobManager", "resource", "cpu"), "half"),
    ]:
        broken = json.loads(json.dumps(flink))
        node = broken
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
    broken_pod = json.loads(json.dumps(flink["spec"]["podTemplate"]))
    broken_pod["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken_pod, K8S_VERSION, strict=True)


def test_flink_deployment_runs_the_pyflink_cloud_job() -> None:
    topology = load_topology(topologies_dir() / "factory_vibration.yaml")
    (flink,) = manifests(topology)["flinkdeployment.yaml"]
    spec = flink["spec"]
    assert spec["flinkVersion"] == "v2_0"
    assert spec["job"]["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    assert spec["job"]["jarURI"].endswith("flink-python-2.0.1.jar")
    assert spec["job"]["parallelism"] == topology.cloud.parallelism
    assert spec["job"]["args"][-3:] == ["cloud", "run", f"{CONFIG_DIR}/topology.yaml"]


def test_models_mount_where_the_topology_points() -> None:
    topology = load_topology(topologies_dir() / "cold_chain.yaml")
    files = manifests(topology)
    (cm,) = files["configmap.yaml"]
    (stateful,) = [o for o in files["gateway-" + topology.gateways[0].id + ".yaml"]
                   if o["kind"] == "StatefulSet"]  # fmt: skip
    pod = stateful["spec"]["template"]["spec"]
    worker = next(c for c in pod["containers"] if c["name"] == "edge-worker")
    mounted = {}
    for mount in worker["volumeMounts"]:
        volume = next((v for v in pod["volumes"] if v["name"] == mount["name"]), {})
        for item in volume.get("configMap", {}).get("items", []):
            mounted[posixpath.join(mount["mountPath"], item["path"])] = item["key"]
    assert cm["data"]["topology.yaml"] == (topologies_dir() / "cold_chain.yaml").read_text()
    assert mounted[f"{CONFIG_DIR}/topology.yaml"] == "topology.yaml"
    for spec in topology.models.values():
        inside = posixpath.normpath(posixpath.join(CONFIG_DIR, str(spec.path)))
        key = mounted[inside]
        real = topology.resolve_path(spec.path).read_bytes()
        assert base64.b64decode(cm["binaryData"][key]) == real


def test_secrets_are_references_never_values(tmp_path: Path) -> None:
    topology = load_topology(topologies_dir() / "factory_vibration.yaml")
    write_manifests(topology, tmp_path, K8sOptions(namespace="plants"))
    text = "".join(p.read_text() for p in sorted(tmp_path.glob("*.yaml")))
    assert not any(secret in text for secret in SECRETS)
    assert ENV["FACTORY_CLOUD_BOOTSTRAP"] not in text  # resolved in the pod, from the Secret
    docs = [
        d
        for p in sorted(tmp_path.glob("gateway-*.yaml"))
        for d in yaml.safe_load_all(p.read_text())
    ]
    pod = next(d for d in docs if d["kind"] == "StatefulSet")["spec"]["template"]["spec"]
    env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for c in pod["containers"]
        if c["name"] != "edge-broker"  # the Kafka sidecar's settings are plain values
        for e in c.get("env", [])
    }
    assert env["FACTORY_CLOUD_PASSWORD"] == {
        "name": "edgestream-factory-vibration-env",
        "key": "FACTORY_CLOUD_PASSWORD",
        "optional": False,
    }
    assert "FACTORY_SIGNING_PUBLIC_KEY" in env
    assert all(d["metadata"]["namespace"] == "plants" for d in docs)


def test_cli_writes_once_then_reports_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(topologies_dir() / "cold_chain.yaml")
    run_cli("deploy", path, "--target", "k8s", "--out", str(tmp_path))
    first = capsys.readouterr().out
    before = {p.name: p.read_text() for p in tmp_path.iterdir()}
    run_cli("deploy", path, "--target", "k8s", "--out", str(tmp_path))
    second = capsys.readouterr().out
    assert "created" in first and "unchanged" in second and "created" not in second
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == before
    assert "flinkdeployment.yaml" in before
