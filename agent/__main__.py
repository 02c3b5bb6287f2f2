"""``python -m agent`` is the same as the ``mpc-agent`` command."""

from agent.app.cli import main

raise SystemExit(main())
