"""Atheris fuzz targets (run them with ``python fuzz/run.py``); the tests import the shared oracles."""
