"""Architectures: the registry, their hypers, and the in-tree model families."""
