"""The whole loop on the embedded default, as ``edgestream up`` runs it."""

from edgestream.loop.state import LoopState
from edgestream.loop.up import LoopConfig, run_loop

__all__ = ["LoopConfig", "LoopState", "run_loop"]
