"""``edgestream eval nab-score``: NAB scores of a detector's results beside the scoreboard.

Usage:

    edgestream eval nab-score --results NAB/results/numenta --corpus NAB
    edgestream eval nab-score --results my-results/mydetector --corpus NAB --json

``--results`` is a NAB-format results directory (``<category>/<detector>_<series>.csv`` with
``timestamp`` and ``anomaly_score`` columns); ``--corpus`` a NAB checkout, from which the
anomaly windows (``labels/combined_windows.json``), the profiles (``config/profiles.json``)
and the published scoreboard (``results/final_results.json``) are read.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from edgestream.cli.app import group, group_hook
from edgestream.cli.options import JsonLine

if TYPE_CHECKING:
    from edgestream.evaluation.nab import Scores
    from edgestream.evaluation.nab_replay import SeriesRun
    from edgestream.evaluation.report import Row

app = group("Detection quality on public benchmarks (the Numenta Anomaly Benchmark).")

register = group_hook(app, "eval")


_out = Console()


@app.command("nab-score")
def nab_score(
    results: Path = typer.Option(..., "--results", help="NAB-format results directory."),
    corpus: Path = typer.Option(..., "--corpus", help="NAB checkout (labels/, config/, results/)."),
    threshold: float = typer.Option(
        None, "--threshold", help="Score every profile at this threshold (default: the best)."
    ),
    as_json: JsonLine = False,
) -> None:
    """Score a detector's results in NAB's three profiles and show the published scoreboard."""
    from edgestream.evaluation.corpus import NabCorpus, read_results_dir
    from edgestream.evaluation.nab import score_corpus
    from edgestream.evaluation.report import result_json, scoreboard

    nab = NabCorpus.at(corpus)
    windows, profiles, published = nab.windows(), nab.profiles(), nab.published()
    detector, series = read_results_dir(results)
    fixed = None if threshold is None else dict.fromkeys(profiles, threshold)
    started = time.perf_counter()
    scores = score_corpus(series, windows, profiles, thresholds=fixed)
    seconds = time.perf_counter() - started
    board = scoreboard(detector, scores, published)
    if len(series) < len(windows):
        _out.print(
            f"[yellow]scored {len(series)} of the corpus' {len(windows)} series: "
            "not comparable to the published scoreboard[/]"
        )
    caption = (
        f"scored at threshold {threshold:g}"
        if fixed
        else "scored at each profile's best corpus threshold (exhaustive search)"
    )
    _out.print(_board_table(board, list(profiles), caption))
    _out.print(_category_table(detector, scores))
    _out.print(f"scored {len(series)} series in {seconds:.2f} s")
    if as_json:
        out = result_json(detector, scores, published, len(series), len(windows), seconds)
        sys.stdout.write(json.dumps(out, separators=(",", ":")) + "\n")


@app.command("nab")
def nab(
    corpus: Path = typer.Option(..., "--corpus", help="NAB checkout (data/, labels/, config/)."),
    topology: Path = typer.Option(
        None, "--topology", help="Topology whose detection path scores (default: nab.yaml)."
    ),
    out: Path = typer.Option(None, "--out", help="Write NAB-format results under this dir."),
    series: str = typer.Option(None, "--series", help="Only series matching this glob."),
    detector: str = typer.Option("edgestream", "--detector", help="Name in results/board."),
    as_json: JsonLine = False,
) -> None:
    """Replay every NAB series as one device through the gateway's detection path, score it."""
    from edgestream.core.paths import topologies_dir
    from edgestream.core.topology import load_topology
    from edgestream.evaluation.corpus import NabCorpus
    from edgestream.evaluation.nab_replay import corpus_json, run_corpus
    from edgestream.evaluation.report import scoreboard

    nab_corpus = NabCorpus.at(corpus)
    topo = load_topology(topology or topologies_dir() / "nab.yaml")
    err = Console(stderr=True)
    started = time.perf_counter()

    def progress(i: int, total: int, run: SeriesRun) -> None:
        per = 1e6 * run.seconds / max(len(run.scores), 1)
        err.print(
            f"[{i}/{total}] {run.name}: {len(run.scores)} records, {run.alerts} alerts, "
            f"{per:.1f} us/record",
            highlight=False,
        )

    result = run_corpus(topo, nab_corpus, series, out, detector, progress)
    assert result.scores is not None
    wall = time.perf_counter() - started
    corpus_series = len(nab_corpus.windows())
    board = scoreboard(detector, result.scores, nab_corpus.published())
    if len(result.series) < corpus_series:
        _out.print(
            f"[yellow]replayed {len(result.series)} of the corpus' {corpus_series} series: "
            "not comparable to the published scoreboard[/]"
        )
    caption = "scored at each profile's best corpus threshold (exhaustive search)"
    _out.print(_board_table(board, list(result.scores.profiles), caption))
    _out.print(_category_table(detector, result.scores))
    _out.print(
        f"{result.records} records in {len(result.series)} series: "
        f"{result.us_per_record:.1f} us per record in the gateway pipeline "
        f"({wall:.1f} s wall in all)"
    )
    if as_json:
        doc = corpus_json(result, topo, nab_corpus, wall, out)
        sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")


def _board_table(board: list[Row], profiles: list[str], caption: str) -> Table:
    table = Table(
        title="NAB scoreboard (normalised: 100 = perfect, 0 = null detector)",
        caption=caption,
    )
    table.add_column("detector", no_wrap=True)
    table.add_column("")
    for profile in profiles:
        table.add_column(profile, justify="right", no_wrap=True)
    for name, source, by in board:
        cells = [f"{by[p]:.2f}" if p in by else "-" for p in profiles]
        style = "bold cyan" if source == "scored" else None
        table.add_row(name, source, *cells, style=style)
    return table


def _category_table(detector: str, scores: Scores) -> Table:
    profiles = list(scores.profiles)
    table = Table(title=f"{detector}: by category (at each profile's corpus threshold)")
    table.add_column("category", no_wrap=True)
    for profile in profiles:
        table.add_column(profile, justify="right", no_wrap=True)
    categories = sorted({c for p in scores.profiles.values() for c in p.categories})
    for category in categories:
        cells = []
        for profile in profiles:
            value = scores.profiles[profile].categories.get(category)
            raw = scores.profiles[profile].category_raw.get(category, 0.0)
            cells.append(f"{value:.2f}" if value is not None else f"raw {raw:.2f}")
        table.add_row(category, *cells)
    thresholds = [f"{scores.profiles[p].threshold:.6g}" for p in profiles]
    table.add_row("threshold", *thresholds, style="dim")
    return table
