"""User-facing errors.

A :class:`UserError` is a mistake in what the user gave us (a file, an option, a
checkpoint). The CLI prints its message as one paragraph without a traceback; any
other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with user input, reported as a clear one-paragraph message."""


def closest_name(name: str, candidates) -> str | None:
    """Return the candidate closest to ``name`` (for 'did you mean' hints)."""
    import difflib

    matches = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates) -> str:
    """A ' Did you mean X?' suffix, or an empty string when nothing is close."""
    match = closest_name(name, candidates)
    return f" Did you mean '{match}'?" if match else ""
