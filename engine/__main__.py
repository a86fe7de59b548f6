"""`python -m engine` is the `syncengine` command."""

from engine.cli import main

raise SystemExit(main())
