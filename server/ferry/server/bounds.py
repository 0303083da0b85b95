"""Range checks for the server's Python settings (``Limits``, ``ServerConfig``): the CLI
checks its flags as it parses them, and code that builds the settings itself gets the same
refusal at construction, not a server that fails every call (a 0 s store timeout) or listens
on a port the kernel wrapped (99999 is 34463)."""

from __future__ import annotations

import math

# TCP's largest port. ``ferry.cli.arguments`` names it too, so that parsing flags (every
# command's start) imports no server code.
MAX_PORT = 65_535


def check_number(
    owner: str,
    name: str,
    value: float,
    *,
    minimum: float,
    exclusive: bool = False,
    maximum: float | None = None,
    integer: bool = False,
) -> None:
    """Refuse ``value`` unless it is a finite number (an int when ``integer``) from
    ``minimum`` (above it when ``exclusive``) up to ``maximum``.

    Raises:
        ValueError: naming ``owner.name``, the value and the range.
    """
    kinds = int if integer else int | float
    fits = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    fits = fits and (value > minimum if exclusive else value >= minimum)
    fits = fits and (maximum is None or value <= maximum)
    if not fits:
        what = "an integer" if integer else "a finite number"
        low = f"above {minimum:g}" if exclusive else f"at least {minimum:g}"
        high = f" and at most {maximum:g}" if maximum is not None else ""
        raise ValueError(f"{owner}.{name} must be {what} {low}{high}, got {value!r}")
