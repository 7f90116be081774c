"""Uncertainty of predictions: last-layer prediction rigidity (LLPR), last-layer
and deep ensembles, their calibration and the figures that judge them.

Architectures expose per-atom last-layer features (``last_layer_features`` of
the contract); everything else here is shared by all of them.
"""
