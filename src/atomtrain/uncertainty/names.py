"""Names of the uncertainty outputs of a target, following metatomic's
``energy_uncertainty`` and ``energy_ensemble`` (a variant such as
``energy/pbe`` gives ``energy_uncertainty/pbe``)."""


def _with_suffix(target: str, suffix: str) -> str:
    base, slash, variant = target.partition("/")
    return f"{base}_{suffix}{slash}{variant}"


def uncertainty_name(target: str) -> str:
    """``energy`` -> ``energy_uncertainty``; ``mtt::dipole`` ->
    ``mtt::dipole_uncertainty``."""
    return _with_suffix(target, "uncertainty")


def ensemble_name(target: str) -> str:
    """``energy`` -> ``energy_ensemble``."""
    return _with_suffix(target, "ensemble")
