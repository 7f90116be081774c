"""Unit conversion on reading: data is stored in eV, Å and their products."""

from metatomic.torch import unit_conversion_factor

from atomtrain.errors import UserError


ENERGY_UNIT = "eV"
LENGTH_UNIT = "angstrom"


def conversion_factor(from_unit: str, to_unit: str, where: str) -> float:
    """Factor turning values in ``from_unit`` into ``to_unit``, or a clear error."""
    try:
        return float(unit_conversion_factor(from_unit, to_unit))
    except (ValueError, RuntimeError) as error:
        raise UserError(
            f"{where}: cannot convert unit '{from_unit}' to '{to_unit}' ({error}). "
            "Use a unit such as eV, meV, kcal/mol, kJ/mol or Hartree for energies "
            "and angstrom, bohr or nm for lengths (compound units such as "
            "'kcal/mol/A' are also understood)."
        ) from None
