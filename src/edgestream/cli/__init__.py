"""The ``edgestream`` command line: each command module exposes ``register(root)`` (see
:mod:`edgestream.cli.app`); options several commands share live in :mod:`edgestream.cli.options`."""
