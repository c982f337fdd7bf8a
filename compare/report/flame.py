"""A flame graph (SVG) of one thread of a py-spy speedscope profile: no dependency, hover for the figures.

Width is the share of the thread's samples; the root is at the bottom; frames under 0.2% of the width are
left out. Colour is the frame's phase (phases.json), so the graph and the phase table read alike.
"""

from __future__ import annotations

from html import escape
from typing import Any

from compare.analysis.phases import Classifier, rules

WIDTH, ROW, MIN_SHARE = 1200, 16, 0.002
COLOURS = {
    "scheduling": "#e4572e",
    "input_preparation": "#f3a712",
    "model_forward": "#29335c",
    "sampling": "#669bbc",
    "output_processing": "#a8c686",
    "detokenization": "#8d6a9f",
    "ipc_serialization": "#dd7373",
    "harness_loop": "#7f7f7f",
    "waiting": "#d9d9d9",
    "other": "#bfbfbf",
}


def _tree(stacks: list[tuple[int, ...]]) -> dict[str, Any]:
    root: dict[str, Any] = {"count": 0, "children": {}}
    for stack in stacks:
        node = root
        node["count"] += 1
        for index in stack:
            node = node["children"].setdefault(index, {"count": 0, "children": {}})
            node["count"] += 1
    return root


def flame_svg(
    speedscope: dict[str, Any],
    thread_name: str | None = None,
    title: str = "",
    extra_rules: list[list[str]] | tuple = (),
) -> str:
    profiles = speedscope["profiles"]
    profile = next((p for p in profiles if p.get("name") == thread_name), None) or max(
        profiles, key=lambda p: len(p["samples"])
    )
    classifier = Classifier(speedscope["shared"]["frames"], rules(extra_rules))
    stacks = [tuple(s) for s in profile["samples"]]
    root, total = _tree(stacks), max(1, len(stacks))
    rects: list[str] = []
    depth_max = [0]

    def walk(node: dict[str, Any], x: float, depth: int) -> None:
        for index, child in sorted(node["children"].items(), key=lambda item: -item[1]["count"]):
            share = child["count"] / total
            if share < MIN_SHARE:
                continue
            width = share * WIDTH
            phase = classifier.frame_phase(index) or "other"
            label = classifier.keys[index]
            depth_max[0] = max(depth_max[0], depth)
            rects.append((x, depth, width, phase, label, share))
            walk(child, x, depth + 1)
            x += width

    walk(root, 0.0, 0)
    height = (depth_max[0] + 3) * ROW
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="monospace" '
        f'font-size="11">',
        f'<text x="4" y="12">{escape(title or profile.get("name", ""))} ({total} samples)</text>',
    ]
    for x, depth, width, phase, label, share in rects:
        y = height - (depth + 1) * ROW
        text = escape(label)
        chars = int(width / 7)
        parts.append(
            f'<g><title>{text} ({share:.1%}, {phase})</title><rect x="{x:.1f}" y="{y}" '
            f'width="{max(width - 0.5, 0.5):.1f}" '
            f'height="{ROW - 1}" fill="{COLOURS.get(phase, "#bfbfbf")}"/>'
            + (f'<text x="{x + 2:.1f}" y="{y + 12}">{text[:chars]}</text>' if chars >= 4 else "")
            + "</g>"
        )
    parts.append("</svg>")
    return "\n".join(parts)
