"""Plans and profiles are written atomically through a temporary file; they keep the mode any
file written there would have (0666 less the umask), not the temporary file's 0600."""

from __future__ import annotations

import os
import stat

from planner.fileio import atomic_write_text


def test_an_atomically_written_file_has_the_ordinary_mode(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "plan.yaml", "x: 1\n")
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
        assert p.read_text() == "x: 1\n"
        os.umask(0o077)
        q = atomic_write_text(tmp_path / "private.yaml", "y: 2\n")
        assert stat.S_IMODE(q.stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert [f.name for f in tmp_path.iterdir() if f.name.endswith(".tmp")] == []
