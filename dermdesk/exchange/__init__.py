"""Datasets in and out: importers, export, splits, data card, de-identification."""
