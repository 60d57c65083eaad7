"""Atlas-wide data the views share: layers, classes, example patches, clusters, concepts.

Large arrays travel as binary traits (float32 / int32 / uint32 bytes) and patches as WebP (or
PNG) sprite sheets, never as JSON lists. One ``AtlasData`` model serves all linked views.
"""

from __future__ import annotations

import io

import anywidget
import numpy as np
import traitlets as t

from ._common import NO_VIEW_ESM, f32, i32, section, u32

# What to run when a section is missing (the views show these notes).
HOW_TO = {
    "patches": "notebookcarto.analyses.attach_patches(atlas, model, dataset)",
    "clusters": "the clustering analysis (notebookcarto.analyses.clustering)",
    "embedding": "the neuron embedding (notebookcarto.analyses.embedding)",
    "influence": "the influence counts (notebookcarto.analyses.influence)",
    "attribution_graphs": "the attribution graphs (notebookcarto.analyses.attribution_graph)",
    "cluster_graphs": "the cluster graphs (notebookcarto.analyses.cluster_graph)",
    "class_embedding": "the class embedding (notebookcarto.analyses.class_embedding)",
    "dissection": "network dissection (notebookcarto.analyses.dissection)",
}


def missing_note(name: str) -> str:
    return f"no '{name}' section in this atlas: run {HOW_TO.get(name, 'its analysis')}"


def _image_bytes(image: np.ndarray, fmt: str, quality: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    picture = Image.fromarray(image)
    if fmt == "webp":
        picture.save(buffer, format="WEBP", quality=quality, method=4)
    else:
        picture.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def _image_format(fmt: str) -> str:
    if fmt not in ("webp", "png"):
        raise ValueError(f"image_format must be 'webp' or 'png', got {fmt!r}")
    if fmt == "webp":
        from PIL import features

        if not features.check("webp"):
            return "png"  # Pillow built without libwebp
    return fmt


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """uint8 heat values -> RGBA uint8 overlay: transparent at 0, dark red through orange to
    pale yellow and mostly opaque at 255."""
    v = heat.astype(np.float32) / 255.0
    rgba = np.empty(heat.shape + (4,), dtype=np.uint8)
    rgba[..., 0] = np.clip(120 + 400 * v, 0, 255)
    rgba[..., 1] = np.clip(255 * (v - 0.35) * 1.6, 0, 255)
    rgba[..., 2] = np.clip(255 * (v - 0.8) * 5, 0, 255)
    rgba[..., 3] = np.clip(215 * v ** 1.5, 0, 255)  # faint where the neuron is weak
    return rgba


def sprite_sheets(patches: np.ndarray, rows: int, fmt: str = "webp", quality: int = 88,
                  heat: bool = False) -> list[bytes]:
    """(neurons, k, s, s[, 3]) patches -> images of ``rows`` neurons each, one neuron per row of
    k patches side by side (heat maps become RGBA overlays)."""
    n, k, s = patches.shape[:3]
    sheets = []
    for start in range(0, n, rows):
        block = patches[start:start + rows]
        if heat:
            block = heat_colours(block)
        # (r, k, s, s, c) -> (r * s, k * s, c)
        image = np.ascontiguousarray(block.transpose(0, 2, 1, 3, 4)).reshape(
            block.shape[0] * s, k * s, block.shape[-1])
        sheets.append(_image_bytes(image, fmt, quality))
    return sheets


def relevance_csr(atlas, max_per_layer: int | None = None):
    """Summit's A per class, each layer scaled by its largest count for that class, as CSR
    (indptr (K+1,), neuron index, value in (0, 1]). Only neurons with A > 0 are stored; with
    ``max_per_layer`` only the largest that many per layer and class."""
    k = len(atlas.class_names) if atlas.stats.num_classes else 0
    indptr, index, value = [0], [], []
    counts = []
    start = 0
    for name, layer in atlas.stats.layers.items():
        counts.append((start, layer.aggregation.counts.cpu().numpy().astype(np.float64)))
        start += layer.channels
    parts = 0
    for c in range(k):
        for offset, a in counts:
            row = a[c]
            top = row.max() if row.size else 0
            if top <= 0:
                continue
            nz = np.flatnonzero(row > 0)
            if max_per_layer is not None and len(nz) > max_per_layer:
                nz = nz[np.argsort(-row[nz], kind="stable")[:max_per_layer]]
                nz.sort()
            index.append(nz + offset)
            value.append(row[nz] / top)
        indptr.append(indptr[-1] + sum(len(v) for v in index[parts:]))
        parts = len(index)
    cat = (lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt))
    return np.asarray(indptr, np.uint32), cat(index, np.uint32), cat(value, np.float32)


def concept_labels(atlas):
    """(per-neuron concept index int32 with -1 for none, concept names, source text)."""
    dissection = section(atlas, "dissection")
    if dissection is not None and "concept" in dissection.get("arrays", {}):
        raw = np.asarray(dissection["arrays"]["concept"]).astype(str)
        none = np.isin(np.char.lower(raw), ["", "none", "nan", "-"])
        names = sorted(set(raw[~none].tolist()))
        lookup = {name: i for i, name in enumerate(names)}
        labels = np.array([-1 if skip else lookup[v] for v, skip in zip(raw, none)], np.int32)
        return labels, names, "dissection: concept with the best IoU"
    exemplar = section(atlas, "exemplar_concepts")
    if exemplar is not None and "shares" in exemplar.get("arrays", {}):
        shares = np.asarray(exemplar["arrays"]["shares"], dtype=np.float64)
        names = [str(c) for c in exemplar.get("meta", {}).get("concepts", [])]
        if shares.ndim == 2 and shares.shape[1] == len(names) and len(names):
            labels = np.where(shares.max(1) > 0, shares.argmax(1), -1).astype(np.int32)
            return labels, names, "exemplar concepts: the concept most of the top images hold"
    return None, [], ""


def class_neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """Indices (n, k) of each row's k nearest other rows by cosine similarity."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(vectors) - 1)
    if k < 1:
        return np.zeros((len(vectors), 0), dtype=np.uint32)
    model = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(vectors)
    _, idx = model.kneighbors(vectors)
    out = np.empty((len(vectors), k), dtype=np.uint32)
    for i, row in enumerate(idx):
        row = row[row != i][:k]
        out[i, :len(row)] = row
        out[i, len(row):] = i
    return out


class AtlasData(anywidget.AnyWidget):
    """The atlas data every view reads (one model shared by linked views; renders nothing).

    Build it with ``AtlasData.from_atlas(atlas)``.
    """

    _esm = NO_VIEW_ESM
    layers = t.List(t.Unicode()).tag(sync=True)
    layer_sizes = t.List(t.Int()).tag(sync=True)
    class_names = t.List(t.Unicode()).tag(sync=True)
    notes = t.Dict().tag(sync=True)
    # example patches: sprite sheets of sheet_rows neurons, one row of patch_k patches each
    patch_k = t.Int(0).tag(sync=True)
    patch_size = t.Int(0).tag(sync=True)
    patch_format = t.Unicode("webp").tag(sync=True)
    sheet_rows = t.Int(0).tag(sync=True)
    patch_sheets = t.List(t.Bytes()).tag(sync=True)
    heat_sheets = t.List(t.Bytes()).tag(sync=True)
    patch_values = t.Bytes(b"").tag(sync=True)
    # per-neuron labels
    cluster = t.Bytes(b"").tag(sync=True)
    concept = t.Bytes(b"").tag(sync=True)
    concept_names = t.List(t.Unicode()).tag(sync=True)
    concept_source = t.Unicode("").tag(sync=True)
    neighbors = t.Bytes(b"").tag(sync=True)
    n_neighbors = t.Int(0).tag(sync=True)
    # Summit's A per class, scaled per layer, as CSR
    rel_indptr = t.Bytes(b"").tag(sync=True)
    rel_index = t.Bytes(b"").tag(sync=True)
    rel_value = t.Bytes(b"").tag(sync=True)

    @classmethod
    def from_atlas(cls, atlas, *, image_format: str = "webp", quality: int = 88,
                   sheet_rows: int = 128, n_neighbors: int = 10, neighbor_limit: int = 100_000,
                   relevance_per_layer: int | None = None) -> "AtlasData":
        """Everything the views need from ``atlas``. Patches become sprite sheets of
        ``sheet_rows`` neurons (``image_format`` 'webp' or 'png', WebP ``quality``); with a
        neuron embedding, the ``n_neighbors`` nearest neighbours (cosine) of each neuron are
        precomputed for atlases of up to ``neighbor_limit`` neurons (larger ones use the 2-D
        projection in the browser); ``relevance_per_layer`` caps the class relevance kept per
        class and layer."""
        fmt = _image_format(image_format)
        sizes = [layer.channels for layer in atlas.stats.layers.values()]
        n = sum(sizes)
        notes = {}
        state = dict(layers=atlas.layers, layer_sizes=sizes,
                     class_names=list(atlas.class_names) if atlas.stats.num_classes else [])
        patches = section(atlas, "patches")
        if patches is not None and "patches" in patches.get("arrays", {}):
            array = np.asarray(patches["arrays"]["patches"], dtype=np.uint8)
            if array.ndim != 5 or array.shape[0] != n or array.shape[-1] != 3:
                raise ValueError(f"section 'patches': expected (neurons={n}, k, size, size, 3) "
                                 f"uint8 patches, got {array.shape}")
            k, size = array.shape[1], array.shape[2]
            rows = max(1, min(sheet_rows, 16000 // size))
            state.update(patch_k=k, patch_size=size, patch_format=fmt, sheet_rows=rows,
                         patch_sheets=sprite_sheets(array, rows, fmt, quality))
            heat = patches["arrays"].get("heatmaps")
            if heat is not None and np.asarray(heat).shape == array.shape[:4]:
                state["heat_sheets"] = sprite_sheets(np.asarray(heat, np.uint8), rows,
                                                     fmt, quality, heat=True)
            values = patches["arrays"].get("values")
            if values is not None and np.asarray(values).shape == (n, k):
                state["patch_values"] = f32(values)
        else:
            notes["patches"] = missing_note("patches")
        clusters = section(atlas, "clusters")
        if clusters is not None and "cluster" in clusters.get("arrays", {}):
            state["cluster"] = i32(np.asarray(clusters["arrays"]["cluster"]).reshape(n))
        else:
            notes["clusters"] = missing_note("clusters")
        labels, names, source = concept_labels(atlas)
        if labels is not None:
            state.update(concept=i32(labels), concept_names=names, concept_source=source)
        if section(atlas, "dissection") is None:
            notes["dissection"] = missing_note("dissection")
        embedding = section(atlas, "embedding")
        vectors = None if embedding is None else embedding.get("arrays", {}).get("vectors")
        if vectors is not None and len(vectors) == n and n <= neighbor_limit and n_neighbors > 0:
            near = class_neighbours(np.asarray(vectors, dtype=np.float32), n_neighbors)
            state.update(neighbors=u32(near), n_neighbors=near.shape[1])
        if atlas.stats.num_classes:
            indptr, index, value = relevance_csr(atlas, relevance_per_layer)
            state.update(rel_indptr=u32(indptr), rel_index=u32(index), rel_value=f32(value))
        return cls(notes=notes, **state)
