"""rtcontrol's benchmark harness (``make bench``); see ``bench/run.py`` and BENCHMARKS.md."""
