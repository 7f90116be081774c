"""ACE-MP runs the architecture conformance suite."""

from atomtrain.testing import ArchitectureTests


class TestAceMp(ArchitectureTests):
    architecture = "ace_mp"
    model_hypers = {"channels": 8, "l_max": 2, "radial_hidden": 8, "num_radial": 4}
