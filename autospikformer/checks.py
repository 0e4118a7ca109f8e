"""One way to refuse a bad setting, for every settings class, constructor and option.

Each check returns the value (as the type it checks for) or raises ``error`` with one line:
``<where>: <value> is not allowed (allowed: <what is>)``, where ``where`` names the setting the
way its user wrote it (``search.trials``, ``population_size``, ``--workers``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NoReturn


def refuse(where: str, value: Any, allowed: str, error: type[Exception] = ValueError) -> NoReturn:
    """Raise ``error`` saying that ``value`` of ``where`` is not allowed, and what is."""
    raise error(f"{where}: {value!r} is not allowed (allowed: {allowed})")


def check_int(
    where: str,
    value: Any,
    *,
    minimum: int | None = None,
    allow_none: bool = False,
    error: type[Exception] = ValueError,
) -> Any:
    """An integer (not a bool) of at least ``minimum``; None too when ``allow_none``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        ok = False
    else:
        ok = minimum is None or value >= minimum
    if not ok:
        bound = "" if minimum is None else f" >= {minimum}"
        refuse(where, value, f"an integer{bound}{' or leave it out' if allow_none else ''}", error)
    return value


def check_number(
    where: str,
    value: Any,
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
    lo_open: bool = False,
    allow_none: bool = False,
    error: type[Exception] = ValueError,
) -> Any:
    """A finite number (not a bool) in ``[lo, hi]`` (``(lo, hi]`` when ``lo_open``), as a float;
    None too when ``allow_none``."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        bounds = []
        if lo != -math.inf:
            bounds.append(f"{'>' if lo_open else '>='} {lo}")
        if hi != math.inf:
            bounds.append(f"<= {hi}")
        bound = (" " + " and ".join(bounds)) if bounds else ""
        refuse(where, value, f"a number{bound}{' or leave it out' if allow_none else ''}", error)
    return float(value)


def check_probability(where: str, value: Any, error: type[Exception] = ValueError) -> float:
    """A number in [0, 1]."""
    return check_number(where, value, lo=0.0, hi=1.0, error=error)


def check_bool(where: str, value: Any, error: type[Exception] = ValueError) -> bool:
    if not isinstance(value, bool):
        refuse(where, value, "true, false", error)
    return value


def check_text(where: str, value: Any, error: type[Exception] = ValueError) -> str:
    """A string with something in it."""
    if not isinstance(value, str) or not value.strip():
        refuse(where, value, "a non-empty string", error)
    return value


def check_choice(
    where: str, value: Any, choices: Iterable[Any], error: type[Exception] = ValueError
) -> Any:
    """One of ``choices`` (listed in the message)."""
    options = list(choices)
    if value not in options:
        refuse(where, value, ", ".join(str(c) for c in options), error)
    return value
