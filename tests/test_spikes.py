"""The loss-spike guard of the shared loop: what it skips, and what it never
skips."""

import math

from atomtrain.training.spikes import SpikeGuard


def warmed(factor=1000.0, value=1.0, steps=20):
    guard = SpikeGuard(factor)
    for _ in range(steps):
        assert not guard.is_spike(value)
    return guard


def test_a_loss_thousands_of_times_the_recent_ones_is_a_spike():
    guard = warmed()
    assert guard.is_spike(5000.0)
    assert guard.skipped == 1
    assert guard.mean == 1.0  # a skipped loss leaves the running mean alone
    assert not guard.is_spike(500.0)  # large, but below the factor


def test_no_spike_while_warming_up_nor_when_disabled():
    guard = warmed(steps=19)
    assert not guard.is_spike(1e9)  # only the 20th loss: still building the mean
    disabled = warmed(factor=0.0)
    assert not disabled.is_spike(1e12)
    assert not warmed().is_spike(math.nan)  # the non-finite check handles these
    assert not warmed(value=0.0).is_spike(1e-6)  # no scale after a perfect fit


def test_falling_losses_are_never_spikes():
    guard = SpikeGuard(10.0)
    for step in range(200):
        assert not guard.is_spike(100.0 * 0.9**step)


def test_a_lasting_change_of_level_is_accepted_after_patience():
    guard = warmed(factor=100.0)
    for _ in range(guard.patience):
        assert guard.is_spike(1e4)
    assert not guard.is_spike(1e4)  # accepted: the mean starts again from it
    assert guard.mean == 1e4
    assert not guard.is_spike(2e4)  # within the new level, still warming up


def test_reset_forgets_the_level_and_the_state_round_trips():
    guard = warmed()
    guard.is_spike(1e6)
    copy = SpikeGuard(1000.0)
    copy.load_state_dict(guard.state_dict())
    assert copy.state_dict() == guard.state_dict()
    assert copy.is_spike(1e6) == guard.is_spike(1e6)
    guard.reset()
    assert not guard.is_spike(1e6)
    assert guard.skipped == 2  # the run's count survives resets
