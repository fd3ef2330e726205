"""Speed measurements of the pre-training step and of its loader (``tools/benchmarks/pretrain_benchmark.py``,
docs/benchmarks.md); the package __init__ imports nothing, so the command line's ``--help`` loads no stack."""
