"""The architecture conformance suite (see :class:`ArchitectureTests`)."""

from atomtrain.testing.suite import ArchitectureTests


__all__ = ["ArchitectureTests"]
