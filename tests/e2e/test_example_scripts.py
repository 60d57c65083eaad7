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
