"""Saving a figure as PNG and SVG, atomically."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt

from tomlab.io import atomic_path


def save_figure(fig: plt.Figure, stem: str | os.PathLike[str]) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and ``stem.svg`` and close it."""
    paths = []
    for ext in ("png", "svg"):
        final = Path(f"{stem}.{ext}")
        with atomic_path(final) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
        paths.append(final)
    plt.close(fig)
    return paths
