"""Both example notebooks run top to bottom (nbclient)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import shared_cache, shared_folder

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name: str, tmp_path, timeout: int = 600):
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    return notebook


def text(notebook) -> str:
    out = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                out.append(output["text"])
            elif "data" in output and "text/plain" in output["data"]:
                out.append(output["data"]["text/plain"])
    return "\n".join(out)


def widget_views(notebook) -> int:
    return sum("application/vnd.jupyter.widget-view+json" in output.get("data", {})
               for cell in notebook.cells for output in cell.get("outputs", []))


def test_quickstart_runs(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NOTEBOOKCARTO_CACHE", str(shared_cache(tmp_path_factory)))
    notebook = run("quickstart.ipynb", tmp_path)
    out = text(notebook)
    assert "held-out accuracy" in out
    assert "notebookcarto-quickstart.html" in out
    assert widget_views(notebook) == 1  # the Explorer
    assert "block4:" in out  # the selection set from Python reads back


def test_cifar10_notebook_runs_or_stops_cleanly(tmp_path, monkeypatch):
    shared = shared_folder()
    have = shared is not None
    if have:
        monkeypatch.setenv("NOTEBOOKCARTO_SHARED", str(shared))
    notebook = run("cifar10_resnet20.ipynb", tmp_path)
    out = text(notebook)
    if have:
        assert "Atlas(9 layers" in out and "layer3.2:" in out
        assert widget_views(notebook) == 1
    else:
        assert "stops" in out and widget_views(notebook) == 0


def test_cifar10_notebook_without_shared_stops_cleanly(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTEBOOKCARTO_SHARED", str(tmp_path / "absent"))
    notebook = run("cifar10_resnet20.ipynb", tmp_path, timeout=120)
    out = text(notebook)
    assert "is not here, so this notebook stops" in out
    assert widget_views(notebook) == 0
