"""``python -m offrec.cli``."""

from offrec.cli import main

raise SystemExit(main())
