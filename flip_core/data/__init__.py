"""Datasets, vocabularies, prompt rendering and synthetic data."""
