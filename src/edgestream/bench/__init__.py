"""Benchmarks behind ``edgestream bench``: real processes, one run, ratios measured together.

Each benchmark returns one JSON-able dict (the CLI's ``--json`` last line) holding its
parameters, the machine it ran on and every number it measured.
"""

from typing import Any

from edgestream.bench.common import BenchError

__all__ = ["BenchError", "EdgeBenchParams", "run_edge_bench"]


def __getattr__(name: str) -> Any:
    """The edge bench on first use: importing it pulls the gateway, ONNX and pandas (seconds),
    which every ``edgestream`` command would otherwise pay at start."""
    if name == "EdgeBenchParams":
        from edgestream.bench.edge_input import EdgeBenchParams

        return EdgeBenchParams
    if name == "run_edge_bench":
        from edgestream.bench.edge import run_edge_bench

        return run_edge_bench
    raise AttributeError(name)
