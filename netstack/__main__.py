"""``python -m netstack`` runs the ``netstack`` command line."""
from netstack.cli import main

raise SystemExit(main())
