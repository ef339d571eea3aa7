"""netstack's test suite, a package: shared helpers are imported as ``tests.support.*``."""
