"""Orchestration and running. A RunConfig (config.py) goes to orchestrate.py, which starts each engine and runs
each scenario (session.py); the runner (runner.py) drives the requests of one cell, closed or open loop,
and stamps every chunk; observe.py and gpu.py watch the cell (harness CPU, engine telemetry, profiler,
NVML); results are written after every cell. Sweeps and ablation sets (sweep.py, ablations.py), child
processes per point (isolate.py), engines started together and measured in turn (together.py,
side_by_side.py), --resume (resume.py), --find-max-rate (search.py) and environment
metadata (environment.py) live here too. May import report/ (to print tables), analysis/, results/,
workloads and engines."""
