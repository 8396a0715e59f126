"""Dataset readers in their real on-disk layouts (VOC2012, Cityscapes, COCO) and label tables.

Each reader lists samples by id/name and fails with a one-line UserError naming the missing
folder or file before any work starts.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from common.cli import UserError
