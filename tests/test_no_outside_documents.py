"""Sources in code and docs are public references (paper, URL, spec sheet) or files of this
repository, never documents a reader of the repository cannot open."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache", "build", "dist"}
BINARY = {".png", ".jpg", ".jpeg", ".gif", ".ico", ".pdf", ".whl", ".gz", ".zip", ".pyc", ".woff", ".woff2"}

# Design notes, research reports and data kept beside the repository, not in it. Spelled
# in pieces so that this file does not match itself.
_NAMES = ("DESIGN" + ".md", "STYLE" + ".md", "hardware_and_" + "formulas", "peers_" + "compression",
          "peers_" + "costmodel", "devices" + ".yaml")
_PATHS = (r"shared[/\\](?:validation|reference)", r"\.\./shared\b", r"/work/", r"[\"']shared[\"']\s*/\s*[\"']")
OUTSIDE = re.compile("|".join([*(re.escape(n) for n in _NAMES), *_PATHS]))


def _candidates():
    """Files of the repository: git's tracked and not-ignored ones, else a walk that skips
    caches, virtual environments and hidden folders."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                             text=True, check=True, timeout=60).stdout
        return [Path(line) for line in out.splitlines() if line]
    except (OSError, subprocess.SubprocessError):
        return [p.relative_to(ROOT) for p in ROOT.rglob("*")
                if not any(part in SKIP_DIRS or part.startswith(".") for part in p.relative_to(ROOT).parts[:-1])]


def _is_virtualenv(rel: Path) -> bool:
    """A virtual environment created inside the checkout (by CI or by hand, under any name)."""
    return any((ROOT / Path(*rel.parts[:i]) / "pyvenv.cfg").is_file() for i in range(1, len(rel.parts)))


def _text_files():
    venvs: dict[str, bool] = {}
    for rel in _candidates():
        path = ROOT / rel
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts):
            continue
        top = rel.parts[0]
        if len(rel.parts) > 1 and venvs.setdefault(top, _is_virtualenv(Path(top, "x"))):
            continue
        if path.is_file() and path.suffix.lower() not in BINARY and path.resolve() != Path(__file__).resolve():
            yield rel, path


def test_no_file_cites_a_document_outside_the_repository():
    hits = []
    checked = 0
    for rel, path in _text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        checked += 1
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{rel}:{number}: {line.strip()[:120]}")
    assert checked > 100, f"only {checked} files scanned: the walk is broken"
    assert not hits, "cite the public source (paper, URL, spec sheet) instead:\n" + "\n".join(hits)


def test_the_pattern_catches_each_kind_of_outside_citation():
    for line in ("see DESIGN" ".md", "(STYLE" ".md practice 3)", "hardware_and_" "formulas.md §B.6",
                 "peers_" "compression.md §9.4", 'ROOT.parent / "shared" / "validation"', "../shared/x"):
        assert OUTSIDE.search(line), line
    assert not OUTSIDE.search("benchmarks/data/published.csv I01; Narayanan et al. 2021 Table 1")


def test_published_measurements_ship_with_the_repository():
    csv = ROOT / "benchmarks" / "data" / "published.csv"
    header = csv.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert "source" in header and "value" in header
