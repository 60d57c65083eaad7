"""Map the pretrained CIFAR ResNet-20 over the CIFAR-10 test images.

    .venv/bin/python examples/map_resnet20.py --shared ../shared --n 10000 --out resnet20-atlas

``--shared`` names the folder with data/cifar10-test and models/resnet20-cifar10.th (default:
$NOTEBOOKCARTO_SHARED, else ../shared).

Prints each class's accuracy and its top neurons in the last block, and writes, per class, a PNG
grid of example patches of those neurons next to the saved atlas.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from notebookcarto import Atlas, mappable_layers
from notebookcarto.analyses import image_getter, neuron_patches, receptive_fields
from notebookcarto.datasets import cifar10_test
from notebookcarto.models import load_resnet20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="number of test images")
    parser.add_argument("--out", default="resnet20-atlas")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shared", default=os.environ.get("NOTEBOOKCARTO_SHARED", "../shared"),
                        help="folder with data/cifar10-test and models/resnet20-cifar10.th")
    args = parser.parse_args()

    shared = Path(args.shared)
    data = cifar10_test(shared / "data" / "cifar10-test")
    # ImageFolder lists images class by class: take an even spread over the whole set
    picks = np.linspace(0, len(data) - 1, min(args.n, len(data))).round().astype(int)
    subset = torch.utils.data.Subset(data, picks.tolist())
    model = load_resnet20(shared / "models" / "resnet20-cifar10.th").to(args.device)
    layers = mappable_layers(model)
    loader = torch.utils.data.DataLoader(subset, batch_size=250)
    atlas = Atlas.build(model, loader, layers, class_names=data.classes, device=args.device,
                        data_info={"name": "CIFAR-10 test", "n": len(subset)})
    out = Path(args.out)
    atlas.save(out / "atlas")

    fields = receptive_fields(model, layers, input_shape=(3, 32, 32))
    images = image_getter(subset)  # undoes the data set's Normalize for display
    print(atlas.classes.to_string())
    for k, name in enumerate(atlas.class_names):
        top = atlas.top_neurons(k, layers[-1], n=4)
        print(f"{name}: " + ", ".join(f"{n} (A={c})" for n, c in top["count"].items()))
        if top.empty:
            continue
        rows = [np.concatenate(list(neuron_patches(atlas, n, images, fields, n_patches=6,
                                                   size=48, fill=None)), 1)
                for n in top.index]
        Image.fromarray(np.concatenate(rows, 0)).save(out / f"{name}.png")
    print(f"atlas and patch grids written to {out}")


if __name__ == "__main__":
    main()
