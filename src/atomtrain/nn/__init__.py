"""Shared model components: flat batches, baselines, descriptors, output maps.

Everything here is TorchScript-compatible: it runs inside exported models.
"""
