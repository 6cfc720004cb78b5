"""The example topologies the deployment tests render, and the environment they resolve."""

from __future__ import annotations

EXAMPLES = ("default.yaml", "factory_vibration.yaml", "cold_chain.yaml")
ENV = {
    "FACTORY_CLOUD_BOOTSTRAP": "kafka.plants.internal:9093",
    "FACTORY_CLOUD_USER": "plant",
    "FACTORY_CLOUD_PASSWORD": "factory-s3cret-value",
    "COLD_CHAIN_CLOUD_BOOTSTRAP": "kafka.cold.example.com:9093",
    "COLD_CHAIN_CLOUD_USER": "fleet",
    "COLD_CHAIN_CLOUD_PASSWORD": "cold-s3cret-value",
}
