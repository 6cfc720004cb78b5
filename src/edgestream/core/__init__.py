"""The small core every stage stands on: paths, ports, broker launcher, registry, serde, schemas."""
