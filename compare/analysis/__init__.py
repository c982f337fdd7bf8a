"""Everything derived from raw records: cell summaries and metrics (summaries.py, metrics.py), the warnings
(checks.py), statistics and bootstrap intervals (stats.py, cellstats.py, ratios.py), SLO goodput (slo.py),
telemetry summaries (telemetry.py), paired runs: HTTP overhead and streaming fidelity (pairs.py), run sets
and their comparability (runsets.py), `--vs` (vs.py) and the ablation table (ablation_table.py). Pure
functions of stored data: no engine, no clock. May import results/, workloads and engines."""
