"""The SAG result: each image's roots (small sets of patches that keep the prediction), the
graphs grown from them by deleting patches, and a layered layout to draw them (igraph's
Sugiyama layout), as an atlas section (``sag``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from ..analyses.result import Result
from .result import check_in_atlas

if TYPE_CHECKING:
    import igraph

    from ..atlas import Atlas

__all__ = ["SAG", "layout"]

ARRAYS = {"image_ids": np.int64, "targets": np.int64, "probabilities": np.float32,
          "images": np.uint8, "heuristic": np.float32, "candidates": np.int64,
          "node_image": np.int64, "node_patches": np.bool_, "node_probability": np.float32,
          "node_depth": np.int64, "positions": np.float32, "roots": np.int64,
          "edge_parent": np.int64, "edge_child": np.int64, "edge_patch": np.int64}


@dataclass
class SAG(Result):
    """Structured attention graphs (``sag.SAGExplainer``), one per image; nodes and edges of
    all images in flat arrays.

    Attributes:
        image_ids, targets: int64 (n,) the images and the class explained; ``probabilities``
            float32 (n,) the target's softmax on the whole image.
        images: uint8 (n, H, W, 3) the images as shown; ``heuristic``: float32 (n, g, g) the
            I-GOS masks that ranked the patches (low = important); ``candidates``: int64 (n,)
            distinct roots the beam search found.
        grid: patches per side (patch p is row p // grid, column p % grid).
        node_image: int64 (N,) the image row of each node; ``node_patches`` bool (N, g * g)
            its inserted patches; ``node_probability`` float32 (N,) the target's probability
            with only them shown; ``node_depth`` int64 (N,) 0 for a root; ``positions``
            float32 (N, 2) x and y in [0, 1] per image (Sugiyama layers top-down).
        roots: int64 (R,) the root nodes, per image in order of selection.
        edge_parent, edge_child: int64 (E,) nodes; ``edge_patch`` int64 (E,) the patch the
            child lacks.
        params: the parameters of the run.
    """

    image_ids: np.ndarray
    targets: np.ndarray
    probabilities: np.ndarray
    images: np.ndarray
    heuristic: np.ndarray
    candidates: np.ndarray
    grid: int
    node_image: np.ndarray
    node_patches: np.ndarray
    node_probability: np.ndarray
    node_depth: np.ndarray
    positions: np.ndarray
    roots: np.ndarray
    edge_parent: np.ndarray
    edge_child: np.ndarray
    edge_patch: np.ndarray
    params: dict = field(default_factory=dict)

    section: ClassVar[str] = "sag"

    @classmethod
    def from_graphs(cls, graphs: list[dict], *, grid: int, **fields) -> "SAG":
        """The result from the search's graphs (one dict per image, in image order: ``row``,
        ``candidates``, ``roots`` [(bits, p)], ``nodes`` {bits: p}, ``depth`` {bits: d},
        ``edges`` [(parent bits, child bits, patch)]), laid out."""
        patches = grid * grid
        bit = np.arange(patches, dtype=np.int64)
        images, sets, probs, depths, roots, parent, child, patch, xy = \
            [], [], [], [], [], [], [], [], []
        for g in graphs:
            start = len(sets)
            index = {c: start + k for k, c in enumerate(g["nodes"])}
            for c, p in g["nodes"].items():
                images.append(g["row"])
                sets.append(c)
                probs.append(p)
                depths.append(g["depth"][c])
            roots += [index[c] for c, _ in g["roots"]]
            for a, b, p in g["edges"]:
                parent.append(index[a])
                child.append(index[b])
                patch.append(p)
            local = [(index[a] - start, index[b] - start) for a, b, _ in g["edges"]]
            xy.append(layout(len(g["nodes"]), local, [g["depth"][c] for c in g["nodes"]]))
        node_patches = ((np.asarray(sets, np.int64).reshape(-1, 1) >> bit) & 1).astype(bool)
        return cls(grid=int(grid), candidates=np.asarray([g["candidates"] for g in graphs],
                                                          np.int64),
                   node_image=np.asarray(images, np.int64),
                   node_patches=node_patches.reshape(-1, patches),
                   node_probability=np.asarray(probs, np.float32),
                   node_depth=np.asarray(depths, np.int64),
                   positions=np.concatenate(xy).astype(np.float32).reshape(-1, 2),
                   roots=np.asarray(roots, np.int64), edge_parent=np.asarray(parent, np.int64),
                   edge_child=np.asarray(child, np.int64), edge_patch=np.asarray(patch, np.int64),
                   **fields)

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def relative(self) -> np.ndarray:
        """float32 (N,): each node's probability over its image's full-image probability."""
        return self.node_probability / self.probabilities[self.node_image]

    def row(self, image_id: int) -> int:
        """The row of ``image_id``; KeyError when it was not explained."""
        hits = np.flatnonzero(self.image_ids == int(image_id))
        if not len(hits):
            raise KeyError(f"image {image_id} has no SAG; explained: "
                           f"{self.image_ids[:10].tolist()}{' ...' if len(self) > 10 else ''}")
        return int(hits[0])

    def roots_of(self, image_id: int) -> list[list[int]]:
        """The roots of one image, each as its sorted patch indices."""
        r = self.row(image_id)
        return [np.flatnonzero(self.node_patches[k]).tolist() for k in self.roots
                if self.node_image[k] == r]

    def nodes_of(self, image_id: int) -> pd.DataFrame:
        """One row per node of one image (index: node): patches, probability, relative,
        depth, root, x, y."""
        r = self.row(image_id)
        k = np.flatnonzero(self.node_image == r)
        return pd.DataFrame({"patches": [np.flatnonzero(self.node_patches[i]).tolist()
                                         for i in k],
                             "probability": self.node_probability[k],
                             "relative": self.relative[k], "depth": self.node_depth[k],
                             "root": np.isin(k, self.roots), "x": self.positions[k, 0],
                             "y": self.positions[k, 1]}, index=pd.Index(k, name="node"))

    def graph(self, image_id: int) -> "igraph.Graph":
        """One image's graph as an ``igraph.Graph`` (vertex attributes ``node``, ``patches``,
        ``probability``, ``relative``, ``root``, ``x``, ``y``; edge attribute ``patch``)."""
        import igraph

        nodes = self.nodes_of(image_id)
        local = {int(k): i for i, k in enumerate(nodes.index)}
        e = np.flatnonzero(np.isin(self.edge_parent, nodes.index))
        g = igraph.Graph(n=len(nodes), edges=[(local[int(self.edge_parent[i])],
                                               local[int(self.edge_child[i])]) for i in e],
                         directed=True)
        g.vs["node"] = nodes.index.tolist()
        for name in nodes.columns:
            g.vs[name] = nodes[name].tolist()
        g.es["patch"] = self.edge_patch[e].tolist()
        return g

    # -- the atlas section --------------------------------------------------------------------
    def to_section(self) -> dict:
        arrays = {k: np.asarray(getattr(self, k), dtype) for k, dtype in ARRAYS.items()}
        return {"meta": {"grid": int(self.grid), "params": dict(self.params)}, "arrays": arrays}

    @classmethod
    def from_section(cls, section: dict, atlas: "Atlas" = None) -> "SAG":
        meta, arrays = section["meta"], section["arrays"]
        return cls(grid=int(meta["grid"]), params=dict(meta["params"]),
                   **{k: arrays[k] for k in ARRAYS})

    def check(self, atlas: "Atlas") -> None:
        if len(np.unique(self.image_ids)) != len(self.image_ids):
            raise ValueError("an image has two SAGs: explain each image once")
        if self.node_patches.shape[1] != self.grid * self.grid:
            raise ValueError(f"nodes of {self.node_patches.shape[1]} patches on a "
                             f"{self.grid} x {self.grid} grid")
        check_in_atlas(atlas, self.targets, self.image_ids)

    def __repr__(self) -> str:
        return (f"SAG({len(self)} images, {self.grid} x {self.grid} patches, "
                f"{len(self.roots)} roots, {len(self.node_image)} nodes)")


def layout(n: int, edges: list, layers: list) -> np.ndarray:
    """float64 (n, 2): igraph's Sugiyama layout of a graph of ``n`` nodes with ``edges``
    [(parent, child)] in ``layers`` (a root's is 0), scaled to [0, 1] (x; 0.5 for one column)
    and y = layer / deepest layer (0 when there is one)."""
    if n == 0:
        return np.zeros((0, 2))
    import igraph

    g = igraph.Graph(n=n, edges=edges, directed=True)
    xy = np.asarray(g.layout_sugiyama(layers=list(layers)).coords, np.float64)[:n]
    x, y = xy[:, 0], np.asarray(layers, np.float64)
    span = x.max() - x.min()
    x = (x - x.min()) / span if span > 0 else np.full(n, 0.5)
    return np.stack([x, y / y.max() if y.max() > 0 else y], 1)
