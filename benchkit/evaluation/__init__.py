"""Evaluation: metrics with bootstrap intervals, and significance tests between runs."""
