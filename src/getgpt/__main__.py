"""``python -m getgpt``: the ``getgpt`` command."""

from .cli.commands import main

raise SystemExit(main())
