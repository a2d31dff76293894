"""Studies: one command from a dataset to a comparative report (runner, statistics, reports).

The folder also holds the benchmark scripts (``bench_*.py``), shipped configs and their results.
"""
