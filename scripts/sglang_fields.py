"""Write engines/sglang/server_args.json: every `ServerArgs` field of the pinned sglang, with its annotation and
default as source text, so `--engine-arg` can be checked and typed on machines without sglang (CPU).

    pip download --no-deps sglang==0.5.17 -d /tmp/sgl
    python scripts/sglang_fields.py /tmp/sgl/sglang-0.5.17-*.whl

Reads `sglang/srt/server_args.py` out of the wheel and parses it (ast); nothing of sglang is imported or run.
"""

from __future__ import annotations

import ast
import json
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "engines" / "sglang" / "server_args.json"


def annotation_type(annotation: ast.expr) -> str:
    """`A[Optional[int], "help", NS(...)]` (sglang's Annotated alias) -> "Optional[int]"; an `Arg(choices=[...])`
    inside makes it a Literal of the choices."""
    if not (isinstance(annotation, ast.Subscript) and getattr(annotation.value, "id", "") in ("A", "Annotated")):
        return ast.unparse(annotation)
    parts = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
    base = ast.unparse(parts[0])
    for part in parts[1:]:
        choices = next((k.value for k in getattr(part, "keywords", []) if k.arg == "choices"), None)
        if isinstance(choices, (ast.List, ast.Tuple)):
            literal = f"Literal[{', '.join(ast.unparse(c) for c in choices.elts)}]"
            return f"Optional[{literal}]" if base.startswith("Optional") else literal
    return base


def server_args_fields(source: str) -> dict[str, dict[str, str]]:
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ServerArgs")
    return {
        node.target.id: {
            "type": annotation_type(node.annotation),
            "default": ast.unparse(node.value) if node.value else "",
        }
        for node in cls.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


def main(argv: list[str]) -> int:
    wheel = Path(argv[0])
    version = wheel.name.split("-")[1]
    with zipfile.ZipFile(wheel) as archive:
        source = archive.read("sglang/srt/server_args.py").decode()
    fields = server_args_fields(source)
    doc = {"sglang": version, "source": f"{wheel.name}: sglang/srt/server_args.py, class ServerArgs", "fields": fields}
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    print(f"{len(fields)} fields of sglang {version} ServerArgs -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
