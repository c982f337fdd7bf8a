"""Anchors: cross-checks of the harness against the field's own tools on one server (`vllm bench serve`:
vllm_bench.py, run as `python -m compare.anchor_vllm`). Not part of the harness; they use it like a user.
May import run/ (RunConfig, scenarios) and below."""
