"""Scoring: confusion matrix and IoU, COCO evaluation, upsample+argmax, backend parity."""
