"""``python -m replay.synthetic``: see ``replay.synthetic.cli``."""

from replay.synthetic.cli import main

raise SystemExit(main())
