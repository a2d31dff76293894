"""Studies: one command from a dataset to a comparative report (runner, statistics, reports).

The folder also holds the shipped configs (``studies/``, ``finetune/``, ``baseline/``,
``textualize/``); the benchmark scripts and their results are in ``benchmarks/`` at the project
root, which is not installed.
"""
