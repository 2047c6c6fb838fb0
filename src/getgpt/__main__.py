"""``python -m getgpt``: the ``getgpt`` command."""

from .cli import main

raise SystemExit(main())
