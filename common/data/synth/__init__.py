"""Synthetic datasets in the real on-disk layouts (VOC, Cityscapes, COCO), for the tests and the demo.

Images are smooth random colour fields with a few flat shapes; labels are drawn from the same
shapes so that a model (even with random weights) and the metric see realistic structure:
several classes per image, ignore regions, varied image sizes.
"""
