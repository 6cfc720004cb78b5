"""Scaffolding shared by the benchmarks and the tests, kept out of the product's stages:
synthetic cloud-side records (:mod:`~edgestream.testing.fleet_records`: what a fleet's
forwarders would deliver to ``fleet.summaries``, ``fleet.alerts`` and ``fleet.samples``)."""
