"""getgpt's benchmark suite: ``python -m bench`` runs it all; see bench/README.md."""
