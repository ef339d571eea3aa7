"""The README's pictures come from `scripts/teaching-pictures.sh`; they must be what it makes today."""
import io
import pathlib
import subprocess

import pytest

pytestmark = pytest.mark.system

REPO = pathlib.Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "teaching"
PICTURES = ["fast-retransmit-ladder.svg", "zero-window-seq.png", "time-wait-states.svg"]


def test_readme_shows_the_pictures():
    readme = (REPO / "README.md").read_text()
    for name in PICTURES:
        assert f"docs/teaching/{name}" in readme
    assert "bash scripts/teaching-pictures.sh" in readme


def test_committed_pictures_are_current(tmp_path):
    r = subprocess.run(["bash", str(REPO / "scripts" / "teaching-pictures.sh"), str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for name in PICTURES:
        fresh, old = (tmp_path / name).read_bytes(), (COMMITTED / name).read_bytes()
        if name.endswith(".svg"):              # our own SVG: byte for byte
            assert fresh == old, f"{name} is stale: run bash scripts/teaching-pictures.sh"
        else:                                   # matplotlib's PNG: the same picture (fonts may anti-alias differently)
            import matplotlib.image as mpimg
            a = mpimg.imread(io.BytesIO(fresh), format="png")
            b = mpimg.imread(io.BytesIO(old), format="png")
            assert a.shape == b.shape, f"{name} is stale: run bash scripts/teaching-pictures.sh"
            assert abs(a - b).mean() < 0.01, f"{name} is stale: run bash scripts/teaching-pictures.sh"
