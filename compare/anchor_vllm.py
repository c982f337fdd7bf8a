"""`python -m compare.anchor_vllm`, the documented command; the anchor itself is compare/anchors/vllm_bench.py."""

import sys

from compare.anchors.vllm_bench import main

if __name__ == "__main__":
    sys.exit(main())
