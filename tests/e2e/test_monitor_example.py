"""The monitor notebook runs top to bottom (nbclient), in its short version."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow
def test_monitor_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTEBOOKCARTO_QUICK", "1")
    notebook = nbformat.read(EXAMPLES / "monitor.ipynb", as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text, views, figures = [], 0, 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", output
            if output.get("output_type") == "stream":
                assert output["name"] != "stderr" or "Warning" not in output["text"], output
                text.append(output["text"])
            data = output.get("data", {})
            text.append(data.get("text/plain", ""))
            views += "application/vnd.jupyter.widget-view+json" in data
            figures += "application/vnd.plotly.v1+json" in data
    out = "\n".join(text)
    assert "Timeline(5 snapshots, steps 0..31, 176 neurons, 8 classes)" in out
    assert "block4" in out and "total" in out  # the detectors table
    assert "median step settled" in out
    assert views == 2  # the live FigureWidget and the Explorer
    assert figures == 4  # accuracy, drift, detectors, turnover
    assert "'steps': 5" in out  # the JSON export
