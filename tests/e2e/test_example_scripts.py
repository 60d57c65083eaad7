"""The example scripts under examples/ run end to end."""

import subprocess
import sys
from pathlib import Path

from notebookcarto import Atlas

ROOT = Path(__file__).resolve().parents[2]


def test_map_resnet20_example(shared, tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "examples/map_resnet20.py"), "--n", "500",
                          "--out", str(tmp_path), "--shared", str(shared)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "horse:" in run.stdout
    atlas = Atlas.load(tmp_path / "atlas")
    assert atlas.stats.n_images == 500 and len(atlas.class_names) == 10
    assert sorted(p.stem for p in tmp_path.glob("*.png")) == sorted(atlas.class_names)


def test_two_routes_example():
    """The SAG finds both routes (a root on each concept's cells) where I-GOS favours one."""
    run = subprocess.run([sys.executable, str(ROOT / "examples/two_routes.py")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 4
    for line in lines:
        assert "SAG roots [[10, 11, 14, 15], [0, 1, 4, 5]]" in line
        square = float(line.split("on the square ")[1].split(",")[0])
        assert square > 0.7
