"""Commands of the ``tritile`` command line, one module each (see :mod:`tritile.sw.cli`)."""
