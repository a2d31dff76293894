"""Studies: one command from a dataset to a comparative report (runner, statistics, reports).

The shipped configs (studies, finetune, baseline, textualize) are data in ``configs/`` and the
benchmark scripts and their results are in ``benchmarks/``, both at the project root and not
installed.
"""
