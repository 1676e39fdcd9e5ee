"""Datasets: readers, synthetic data, splits, the audit, fetching, decoding and the image cache."""
