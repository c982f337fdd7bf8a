"""enginebench's harness, in layers. A layer may import the layers below it (and the workloads and the engine
contract), never one above; `tests/test_layers.py` checks it against LAYERS.

- cli/       command lines: `python -m compare` (and the argument parsing that builds a RunConfig)
- anchors/   cross-checks against the field's own tools (`python -m compare.anchor_vllm`); not the harness
- run/       orchestration and running: RunConfig -> engines started -> cells run -> results written;
             sweeps, isolation, resume, the GPU sampler, environment metadata
- report/    from stored results to conclusions: `python -m compare.report`, tables, markdown, figures,
             roofline, hypotheses and their verdicts
- analysis/  figures derived from raw records: metrics, warnings, statistics, pairs, comparisons
- results/   the base: per-request records and the versioned results file

How one request travels through them: docs/architecture.md.
"""

# Top to bottom; each entry is a layer's packages and modules. Below them: workloads, then engines.
LAYERS = (
    ("cli", ("compare.cli", "compare.anchors", "compare.anchor_vllm", "compare.__main__")),
    ("run", ("compare.run",)),
    ("report", ("compare.report",)),
    ("analysis", ("compare.analysis",)),
    ("results", ("compare.results",)),
    ("workloads", ("workloads",)),
    ("engine contract", ("engines",)),
)
