"""The ``edgestream`` command line. Each module registers one command group."""
