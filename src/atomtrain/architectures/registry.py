"""Find architectures by name: in-tree (stable, experimental, deprecated) and
plug-ins registered under the ``atomtrain.architectures`` entry-point group."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass
from types import ModuleType

from atomtrain.architecture_names import record
from atomtrain.errors import UserError, did_you_mean


_ROOT = os.path.dirname(__file__)
_STAGE_FOLDERS = {"experimental": "experimental", "deprecated": "deprecated"}
ENTRY_POINT_GROUP = "atomtrain.architectures"


@dataclass(frozen=True)
class ArchitectureSpec:
    """Where an architecture lives and what stage it is in."""

    name: str  # as users write it, e.g. "soap_bpnn" or "experimental.foo"
    module: str  # importable package path
    stage: str  # "stable", "experimental" or "deprecated"
    source: str  # "in-tree" or "plug-in <distribution>"


def _is_architecture_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "documentation.py"))


def _in_tree() -> dict[str, ArchitectureSpec]:
    specs = {}
    for stage_dir, stage in [("", "stable"), *_STAGE_FOLDERS.items()]:
        folder = os.path.join(_ROOT, stage_dir)
        if not os.path.isdir(folder):
            continue
        for entry in sorted(os.listdir(folder)):
            if not _is_architecture_dir(os.path.join(folder, entry)):
                continue
            name = f"{stage_dir}.{entry}" if stage_dir else entry
            specs[name] = ArchitectureSpec(
                name, f"atomtrain.architectures.{name}", stage, "in-tree"
            )
    return specs


def _plugins() -> list[ArchitectureSpec]:
    specs = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        distribution = entry.dist.name if entry.dist is not None else "unknown"
        stage = _plugin_stage(entry.value)
        name = entry.name if stage == "stable" else f"{stage}.{entry.name}"
        specs.append(
            ArchitectureSpec(name, entry.value, stage, f"plug-in {distribution}")
        )
    return specs


def _plugin_stage(module: str) -> str:
    from atomtrain.architectures.stages import declarations

    stage = declarations(module).get("__stage__", "experimental")
    if stage not in ("stable", "experimental", "deprecated"):
        raise UserError(
            f"plug-in architecture {module} declares __stage__ = {stage!r}; use "
            "'stable', 'experimental' or 'deprecated'."
        )
    return stage


def all_architectures() -> dict[str, ArchitectureSpec]:
    """Every known architecture by name; a plug-in clashing with one is an error."""
    specs = _in_tree()
    for plugin in _plugins():
        if plugin.name in specs:
            other = specs[plugin.name]
            raise UserError(
                f"architecture name '{plugin.name}' is defined twice: by "
                f"{other.source} ({other.module}) and by {plugin.source} "
                f"({plugin.module}). Rename one of them or uninstall the plug-in."
            )
        specs[plugin.name] = plugin
    return specs


def find_architecture(name: str) -> ArchitectureSpec:
    specs = all_architectures()
    if name not in specs:
        raise UserError(
            f"unknown architecture '{name}'."
            + did_you_mean(name, specs)
            + f" Known architectures: {', '.join(sorted(specs))}."
        )
    return specs[name]


def import_documentation(name: str) -> ModuleType:
    """The architecture's ``documentation.py``, loaded from its file so that the
    package's ``__init__.py`` (and the model code with its extras) is not run."""
    module = find_architecture(name).module
    full_name = module + ".documentation"
    if full_name in sys.modules:
        return sys.modules[full_name]
    package = importlib.util.find_spec(module)
    if package is None or not package.submodule_search_locations:
        raise UserError(f"architecture '{name}': cannot find the package {module}.")
    path = os.path.join(package.submodule_search_locations[0], "documentation.py")
    spec = importlib.util.spec_from_file_location(full_name, path)
    documentation = importlib.util.module_from_spec(spec)
    sys.modules[full_name] = documentation
    try:
        spec.loader.exec_module(documentation)
    except BaseException:
        del sys.modules[full_name]
        raise
    return documentation


def import_architecture(name: str) -> ModuleType:
    """The architecture package with ``__model__`` and ``__trainer__``; warns for
    experimental and deprecated ones and refuses those past their removal."""
    from atomtrain.architectures.stages import announce_stage

    spec = find_architecture(name)
    announce_stage(spec)
    try:
        module = importlib.import_module(spec.module)
    except ImportError as error:
        from atomtrain.architectures.stages import install_hint

        raise UserError(
            f"architecture '{name}' needs packages that are not installed "
            f"({error}). Install them with: {install_hint(spec)}"
        ) from None
    for attribute in ("__model__", "__trainer__"):
        if not hasattr(module, attribute):
            raise UserError(
                f"architecture '{name}' ({spec.module}) does not define {attribute} "
                "in its __init__.py; an architecture must set __model__ and "
                "__trainer__ to its model and trainer classes."
            )
    record(spec.module, spec.name)  # for checkpoints, written below the registry
    return module
