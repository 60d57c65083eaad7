"""Command line: ``notebookcarto demo`` (also ``python -m notebookcarto demo``)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _device(name: str) -> str:
    import torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"--device {name}: CUDA is not available on this machine")
    return name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="notebookcarto", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="map the concepts of a CNN trained on the built-in "
                                            "concept playground")
    demo.add_argument("--out", default="carto-demo", help="output folder (default: carto-demo)")
    demo.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N")
    demo.add_argument("--quick", action="store_true", help="a small, fast run (for tests)")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)

    from .demo import run_demo

    run_demo(args.out, device=args.device, quick=args.quick, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
