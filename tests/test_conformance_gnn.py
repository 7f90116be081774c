"""The GNN runs the architecture conformance suite."""

from atomtrain.testing import ArchitectureTests


class TestGnn(ArchitectureTests):
    architecture = "gnn"
    model_hypers = {"width": 16, "num_vectors": 4, "head_width": 16, "num_heads": 2}
