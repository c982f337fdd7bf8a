"""From stored results to conclusions: `python -m compare.report` (command.py), the printed tables (tables.py),
report.md (markdown.py), figures (figures.py), the roofline (roofline.py), and the hypotheses H1-H5 with
their verdicts (hypotheses.py, verdicts.py). It renders and judges what analysis/ computes. May import
analysis/, results/, workloads and engines."""
