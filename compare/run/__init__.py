"""Orchestration and running, by concern. The run path is here: a RunConfig (config.py) goes to orchestrate.py,
which starts each engine (its output kept apart by enginelog.py) and runs each scenario (session.py); the runner
(runner.py) drives the requests of one cell, closed or open loop, and stamps every chunk. Beside it: points/ (more
than one point per command: sweeps, ablations, isolation, resume, the rate search, engines started together),
clients/ (the client spread over processes or hosts) and instruments/ (what watches a cell: telemetry, GPU,
energy, host profile, NVTX, the collector, the environment). May import report/ (to print tables), analysis/,
results/, workloads and engines."""
