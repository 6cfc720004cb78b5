"""A plan's topics and schemas, applied to brokers and a registry: configured ones, else the
embedded stack (started when needed). Idempotent: topics that exist are left alone (a
partition count that differs from the plan is reported, never changed silently), and a schema
already registered under its subject is not registered again. Each step reports a
:class:`Change`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from edgestream.core.exceptions import EdgestreamError
from edgestream.core.topology import Topology
from edgestream.deploy.exceptions import DeployError
from edgestream.deploy.plan import CLOUD, Plan

__all__ = ["Change", "Targets", "apply_schemas", "apply_topics", "resolve_targets"]


@dataclass(frozen=True)
class Change:
    """One line of the apply report."""

    section: str  # topics | schemas | processes | stack
    target: str
    name: str
    action: str  # created | registered | started | restarted | unchanged | differs | skipped
    detail: str = ""


@dataclass(frozen=True)
class Targets:
    """Where the plan goes: broker name -> bootstrap, and the registry URL."""

    brokers: dict[str, str]
    registry: str


def resolve_targets(topology: Topology, plan: Plan, changes: list[Change]) -> Targets:
    """Configured brokers/registry, else the embedded stack (started here when needed, with
    one broker per gateway that has no ``bootstrap``)."""
    brokers = {name: addr for name, addr in plan.brokers.items() if addr}
    registry = topology.registry
    missing = [name for name in plan.brokers if name not in brokers]
    if missing or registry is None:
        from edgestream.core.stack import Stack

        stack = Stack()
        before = stack.status()
        names = [g.id for g in topology.gateways if g.bootstrap is None] or [
            g.id for g in topology.gateways[:1]
        ]
        try:
            status = stack.start(gateways=before.gateways or names)
        except EdgestreamError as error:
            raise DeployError(f"embedded stack: {error}") from None
        wanted = [n.split(":", 1)[1] for n in missing if n != CLOUD]
        absent = [n for n in wanted if n not in status.gateways]
        if absent:
            raise DeployError(
                f"the embedded stack runs gateway brokers {', '.join(status.gateways)}, but the "
                f"topology needs {', '.join(absent)}: run `edgestream stack stop` (the deploy "
                "starts the right ones) or give those gateways a bootstrap"
            )
        ends = status.endpoints()
        action = "unchanged" if before.running else "started"
        changes.append(
            Change("stack", "embedded", "brokers + registry", action, str(stack.data_dir))
        )
        edge: dict[str, str] = ends["edge"]  # type: ignore[assignment]
        for name in missing:
            brokers[name] = str(ends["cloud"]) if name == CLOUD else edge[name.split(":", 1)[1]]
        registry = registry or str(ends["registry"])
    return Targets(brokers, str(registry))


# --- topics ------------------------------------------------------------------------------------


def apply_topics(plan: Plan, targets: Targets, changes: list[Change], settings: dict) -> None:
    """Create the plan's topics that do not exist on each broker (``settings``: the cloud
    broker's client security); report the others, a differing partition count included."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from edgestream.core.broker import wait_broker

    for broker, bootstrap in targets.brokers.items():
        topics = plan.topics_on(broker)
        if not topics:
            continue
        wait_broker(bootstrap.split(",")[0], timeout=15)
        conf = {"bootstrap.servers": bootstrap, "log_level": 3}
        if broker == CLOUD:
            conf.update(settings)
        admin = AdminClient(conf)
        existing = admin.list_topics(timeout=15).topics
        new = []
        for topic in topics:
            found = existing.get(topic.name)
            if found is None or found.error is not None:
                new.append(topic)
                continue
            parts = len(found.partitions)
            if parts == topic.partitions:
                changes.append(Change("topics", broker, topic.name, "unchanged", f"{parts}p"))
            else:
                detail = f"{parts} partitions, plan {topic.partitions}: not changed"
                changes.append(Change("topics", broker, topic.name, "differs", detail))
        if not new:
            continue
        futures = admin.create_topics(
            [NewTopic(t.name, t.partitions, 1, config=dict(t.configs)) for t in new],
            request_timeout=15,
        )
        for topic in new:
            try:
                futures[topic.name].result(15)
            except Exception as error:  # KafkaException: one line per topic, keep going
                raise DeployError(f"{broker}: cannot create topic {topic.name}: {error}") from None
            changes.append(Change("topics", broker, topic.name, "created", f"{topic.partitions}p"))


# --- schemas -----------------------------------------------------------------------------------


def apply_schemas(plan: Plan, registry: str, changes: list[Change]) -> None:
    """Register the plan's value schemas the registry does not hold under their subject."""
    from confluent_kafka.schema_registry import Schema, SchemaRegistryError

    from edgestream.core.avro_schema import load_schema
    from edgestream.core.registry.client import registry_call, registry_client

    client = registry_client(registry)
    for spec in plan.schemas:
        text = json.dumps(load_schema(spec.record), separators=(",", ":"))
        schema = Schema(text, "AVRO")
        with registry_call(client):
            try:
                found = client.lookup_schema(spec.subject, schema)
                detail = f"{spec.record} id {found.schema_id} v{found.version}"
                changes.append(Change("schemas", "registry", spec.subject, "unchanged", detail))
                continue
            except SchemaRegistryError as error:
                if error.http_status_code != 404:
                    raise
            try:
                schema_id = client.register_schema(spec.subject, schema)
            except SchemaRegistryError as error:
                raise DeployError(
                    f"registry {registry}: {spec.subject} refused {spec.record}: "
                    f"{error.error_message} (check with `edgestream schemas check`)"
                ) from None
            detail = f"{spec.record} id {schema_id}"
            changes.append(Change("schemas", "registry", spec.subject, "registered", detail))
