"""The loss section in force at a point of training: the base section, changed
from given epochs on (``loss_schedule``) and during stage two (``stage_two``)."""

from __future__ import annotations

from atomtrain.errors import UserError
from atomtrain.options.merge import deep_merge


def _merged(loss: dict, change: dict, where: str) -> dict:
    unknown = set(change) - set(loss)
    if unknown:
        raise UserError(
            f"architecture.training.{where} names {', '.join(sorted(unknown))}, "
            f"which is not a target of the loss (targets: "
            f"{', '.join(sorted(loss))})."
        )
    return deep_merge(
        loss, {name: _section(term, where) for name, term in change.items()}
    )


def _section(term, where: str) -> dict:
    """A change in the short forms of the loss section: a weight or a type."""
    if isinstance(term, (int, float)) and not isinstance(term, bool):
        return {"weight": float(term)}
    if isinstance(term, str):
        return {"type": term}
    if isinstance(term, dict):
        return term
    raise UserError(
        f"architecture.training.{where} must give each target a section such as "
        f"{{weight: 10}}, a weight or a loss type; got {term!r}."
    )


def loss_at_epoch(hypers: dict, epoch: int) -> dict:
    """The loss section in force at ``epoch`` (0-based): the base section with
    every ``loss_schedule`` entry whose epoch has been reached merged over it."""
    loss = hypers.get("loss", {})
    for start, change in sorted(hypers.get("loss_schedule", {}).items()):
        if epoch + 1 >= int(start):
            loss = _merged(loss, change, f"loss_schedule.{start}")
    return loss


def loss_in_force(hypers: dict, epoch: int, stage_two: bool) -> dict:
    """:func:`loss_at_epoch`, with the stage-two changes merged over it once
    stage two has started."""
    loss = loss_at_epoch(hypers, epoch)
    if stage_two:
        change = (hypers.get("stage_two") or {}).get("loss") or {}
        loss = _merged(loss, change, "stage_two.loss")
    return loss
