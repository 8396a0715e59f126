"""Datasets in their real on-disk layouts: images, split lists, VOC, Cityscapes, COCO, synthetic sets."""
