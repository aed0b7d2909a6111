"""`python -m edgekd ...`: the same command as `edgekd ...`."""
from edgekd.cli.main import main

raise SystemExit(main())
