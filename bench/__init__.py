"""The benchmark suite: ``make bench`` (``python -m bench``), never part of ``make test``.

Every scenario measures the product server and, in the same run, the baselines
that say what its figures mean: a bare ``websockets`` server (the Python
ceiling), the same with the product's record layer, the plain Channels design,
and a raw ASGI app on daphne. The load generator (:mod:`bench.loadgen`) runs in
worker processes and measures its own CPU, so a figure limited by the load
generator rather than by the server is flagged as such in the report.

Layout: :mod:`bench.procs` starts and watches server processes,
:mod:`bench.baselines` holds the baseline servers, :mod:`bench.product` starts
the real server, :mod:`bench.scenarios` one module per scenario, and
:mod:`bench.report` turns the results into ``docs/benchmarks.md`` and its plot.
"""
