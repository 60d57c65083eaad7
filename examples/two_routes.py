"""One heatmap against a structured attention graph, on a model with two ways to one class.

The planted model (``notebookcarto.testing.PlantedRoutesNet``) calls an image class 1 when it
holds a red square *or* a striped disc. On images holding both, I-GOS puts most of its saliency
on one of them, as if the other did not count; the SAG finds two roots, one over each concept,
either of which alone keeps 90% of the probability.

Run from the repo root:  .venv/bin/python examples/two_routes.py
"""

from notebookcarto.explain import IGOS, SAGExplainer
from notebookcarto.explain.igos import scaled_weights
from notebookcarto.testing.planted_routes import PlantedRoutesNet, concept_cells, routes_images

ROUTE = 1  # the planted class


def main() -> None:
    model = PlantedRoutesNet().eval()
    x, concepts = routes_images([3, 3, 3, 3], seed=1)  # kind 3: both concepts
    masks = IGOS(model, size=4, iterations=2, noise=0.045, baseline="zeros",
                 **scaled_weights(4)).attribute(x, ROUTE)
    saliency = (1 - masks).flatten(1)
    sag = SAGExplainer(model).attribute(x, ROUTE)
    for i, present in enumerate(concepts):
        shares = [float(saliency[i, concept_cells(c)].sum() / saliency[i].sum()) for c in present]
        roots = [sorted(r) for r in sag.roots_of(i)]
        print(f"image {i}: I-GOS saliency on the square {shares[0]:.2f}, on the disc "
              f"{shares[1]:.2f}; SAG roots {roots} (square cells {concept_cells(0)}, disc cells "
              f"{concept_cells(1)})")


if __name__ == "__main__":
    main()
