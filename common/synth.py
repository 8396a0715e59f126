"""Synthetic datasets in the real on-disk layouts, for the tests and the demo run.

Images are smooth random colour fields with a few flat shapes; labels are drawn from the same
shapes so that a model (even with random weights) and the metric see realistic structure:
several classes per image, ignore regions, varied image sizes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
