"""``python -m pygent_lc.cli``: the ``pygent-lc`` command."""

from pygent_lc.cli import main

raise SystemExit(main())
