"""One module of figures per experiment, each saved as PNG and SVG."""

import matplotlib

matplotlib.use("Agg")
