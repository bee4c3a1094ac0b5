"""The ``factory`` command line (``factory.cli.main``): one module per verb group."""
