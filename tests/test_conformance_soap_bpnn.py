"""SOAP-BPNN runs the architecture conformance suite."""

from atomtrain.testing import ArchitectureTests


class TestSoapBpnn(ArchitectureTests):
    architecture = "soap_bpnn"
    model_hypers = {
        "soap": {"max_radial": 4, "max_angular": 3},
        "bpnn": {"num_neurons_per_layer": 32},
    }
