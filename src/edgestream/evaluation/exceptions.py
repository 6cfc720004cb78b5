"""Errors of the evaluation layer. Each message names the file or series and what to do."""

from __future__ import annotations

from edgestream.core.exceptions import EdgestreamError


class EvaluationError(EdgestreamError, ValueError):
    """Scoring inputs that do not fit together (a series without windows, unequal lengths)."""


class CorpusError(EvaluationError):
    """A NAB corpus or results directory is missing a file or has one in the wrong format."""
