"""Plain lines: every Python file as the formatter writes it at one line length, no `# fmt: skip`, no line over
120 characters (strings and comments included), and no module over 400 lines: files split by concept, not by count."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent
LINE_LENGTH = 120  # pyproject.toml [tool.ruff]
MAX_MODULE_LINES = 400


def _python_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [ROOT / name for name in listed.stdout.split()]


def test_every_file_is_as_the_formatter_writes_it():
    pytest.importorskip("ruff")
    check = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert check.returncode == 0, f"run: .venv/bin/python -m ruff format .\n{check.stdout}{check.stderr}"


def test_no_formatter_escapes_no_long_lines_no_long_modules():
    files = _python_files()
    assert len(files) > 100 and Path(__file__) in files
    skips, long_lines, long_modules = [], [], []
    for path in files:
        lines = path.read_text().splitlines()
        where = path.relative_to(ROOT)
        skips += [f"{where}:{i}" for i, line in enumerate(lines, 1) if line.rstrip().endswith("# fmt" + ": skip")]
        long_lines += [f"{where}:{i}" for i, line in enumerate(lines, 1) if len(line) > LINE_LENGTH]
        if len(lines) > MAX_MODULE_LINES:
            long_modules.append(f"{where} ({len(lines)})")
    assert not skips and not long_lines and not long_modules, (skips, long_lines, long_modules)
