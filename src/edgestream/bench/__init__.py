"""Benchmarks behind ``edgestream bench``: real processes, one run, ratios measured together.

Each benchmark returns one JSON-able dict (the CLI's ``--json`` last line) holding its
parameters, the machine it ran on and every number it measured.
"""

from edgestream.bench.common import BenchError
from edgestream.bench.edge import EdgeBenchParams, run_edge_bench

__all__ = ["BenchError", "EdgeBenchParams", "run_edge_bench"]
