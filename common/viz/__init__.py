"""Pictures of predictions, torch-free (numpy + PIL + cv2): dataset palettes, colour maps,
overlays with a legend of the classes present, disagreement maps and thumbnails.

`common.viz.show` is what the postprocesses call (`--show-dir`); `common.viz.disagreement`
compares two show folders; `common.summary.html_report` puts thumbnails on results/report.html.
"""
