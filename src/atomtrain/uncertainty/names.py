"""Names of the uncertainty outputs of a target, following metatomic's
``energy_uncertainty`` and ``energy_ensemble`` (a variant such as
``energy/pbe`` gives ``energy_uncertainty/pbe``). metatomic knows these two
names only: the uncertainty of another standard output (a direct force or
stress) goes in atomtrain's namespace:
``atomtrain::non_conservative_force_uncertainty``."""


def _with_suffix(target: str, suffix: str) -> str:
    base, slash, variant = target.partition("/")
    if base != "energy" and "::" not in base:
        base = "atomtrain::" + base
    return f"{base}_{suffix}{slash}{variant}"


def uncertainty_name(target: str) -> str:
    """``energy`` -> ``energy_uncertainty``; ``mtt::dipole`` ->
    ``mtt::dipole_uncertainty``."""
    return _with_suffix(target, "uncertainty")


def ensemble_name(target: str) -> str:
    """``energy`` -> ``energy_ensemble``."""
    return _with_suffix(target, "ensemble")
