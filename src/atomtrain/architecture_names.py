"""Registry names of architectures, for the code below the registry.

Checkpoints and exported models record the name users write (``soap_bpnn``,
``experimental.mace``, a plug-in's entry-point name). The registry knows it,
but the training loop and the export sit below the registry and must not
import it: the registry records here each architecture it imports, and in-tree
packages are named from their module path when nobody went through it.
"""

from __future__ import annotations


IN_TREE_PACKAGE = "atomtrain.architectures."
_RECORDED: dict[str, str] = {}  # package -> registry name


def record(package: str, name: str) -> None:
    """Remember that the architecture in ``package`` is called ``name``."""
    _RECORDED[package] = name


def architecture_name(module: str) -> str:
    """Registry name of the architecture that defines ``module`` (a model's or
    trainer's ``__module__``); the module itself when no architecture does."""
    for package, name in _RECORDED.items():
        if module == package or module.startswith(package + "."):
            return name
    if module.startswith(IN_TREE_PACKAGE):
        parts = module[len(IN_TREE_PACKAGE) :].split(".")
        if parts[0] in ("experimental", "deprecated") and len(parts) > 1:
            return ".".join(parts[:2])
        return parts[0]
    return module
