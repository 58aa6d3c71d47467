"""``python -m hadron_hf.cli``: the ``hadron-hf`` command."""

from hadron_hf.cli import main

raise SystemExit(main())
