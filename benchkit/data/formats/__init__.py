"""The first-party dataset formats; importing registers them (the registry imports this package lazily).

- ``roboflow_csv``: a Roboflow multi-label CSV export, ``<root>/<split>/_classes.csv`` beside the images;
- ``imagefolder``: ``<root>/<split>/<class name>/<image>``;
- ``csv``: one CSV (or one per split) of image paths and labels, optional subjects and splits;
- ``medmnist_npz``: a MedMNIST ``.npz`` file of image and label arrays (read with numpy);
- ``synthetic``: drawn images, for tests and examples.

The contract a format implements is :mod:`benchkit.data.reading`.
"""

from . import csv_table, imagefolder, medmnist, roboflow, synthetic  # noqa: F401
