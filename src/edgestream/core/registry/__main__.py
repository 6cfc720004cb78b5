"""``python -m edgestream.core.registry --db PATH --host H --port N``."""

from edgestream.core.registry.server import main

main()
