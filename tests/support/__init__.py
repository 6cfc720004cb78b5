"""Scaffolding the tests share, one module per concept: test modules import helpers from here
(and from ``edgestream``), never from another test module or from a ``conftest.py``; fixtures
stay in the ``conftest.py`` files, which may import from here. Scaffolding the benchmarks
share with the tests lives in the package (``edgestream.testing``)."""
