"""``make bench``: the pipeline's throughput, latency, freshness, history and memory, each figure
beside the machine's own ceiling measured in the same runs (see :mod:`tools.bench.cli`)."""
