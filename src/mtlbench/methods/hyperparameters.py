"""Declared hyperparameters of a method: default, type, valid range, and validation with one-line errors."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtlbench.errors import UserInputError, unknown


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(text)


def _parse_floats(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.replace(";", ",").split(",") if part.strip())


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter: ``kind`` in {'float', 'int', 'bool', 'str', 'floats'}.

    ``low``/``high`` bound numbers (``*_inclusive`` say whether the bound itself is allowed);
    ``choices`` restricts strings; ``floats`` is a tuple of floats (given as ``0.3,0.7``).
    """

    name: str
    default: Any
    doc: str
    kind: str = "float"
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: tuple[Any, ...] | None = None

    def allowed(self) -> str:
        """A short text of what is allowed, e.g. ``[0, 1)`` or ``one of: loss+, l2``."""
        if self.choices is not None:
            return "one of: " + ", ".join(map(str, self.choices))
        if self.kind == "bool":
            return "true or false"
        if self.low is None and self.high is None:
            return {"floats": "comma-separated numbers", "str": "text"}.get(self.kind, f"any {self.kind}")
        left = ("[" if self.low_inclusive else "(") + ("-inf" if self.low is None else f"{self.low:g}")
        right = ("inf" if self.high is None else f"{self.high:g}") + ("]" if self.high_inclusive else ")")
        return f"{left}, {right}"

    def validate(self, value: Any, method: str) -> Any:
        """Coerce ``value`` (strings from the CLI too) and check it; raise a one-line error if bad."""
        try:
            coerced = self._coerce(value)
        except (TypeError, ValueError):
            raise UserInputError(
                f"{method}: {self.name}={value!r} is not a valid {self.kind}; allowed: {self.allowed()}"
            ) from None
        if not self._in_range(coerced):
            raise UserInputError(f"{method}: {self.name}={value!r} is out of range; allowed: {self.allowed()}")
        return coerced

    def _coerce(self, value: Any) -> Any:
        if value is None:
            if self.default is None:
                return None
            raise ValueError(value)
        if self.kind == "float":
            result = float(value)
            if math.isnan(result):
                raise ValueError(value)
            return result
        if self.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if self.kind == "bool":
            return _parse_bool(value) if isinstance(value, str) else bool(value)
        if self.kind == "floats":
            if isinstance(value, str):
                return _parse_floats(value)
            return tuple(float(v) for v in value)
        return str(value)

    def _in_range(self, value: Any) -> bool:
        if value is None:
            return True
        if self.choices is not None:
            return value in self.choices
        values: Sequence[Any] = value if self.kind == "floats" else (value,)
        if self.kind not in {"float", "int", "floats"}:
            return True
        for number in values:
            if self.low is not None and (number < self.low or (number == self.low and not self.low_inclusive)):
                return False
            if self.high is not None and (number > self.high or (number == self.high and not self.high_inclusive)):
                return False
        return True


def validate_hyperparameters(
    method: str, declared: Sequence[Hyperparameter], values: Mapping[str, Any]
) -> dict[str, Any]:
    """Defaults overridden by ``values``; unknown names and bad values raise a one-line error."""
    by_name = {h.name: h for h in declared}
    for key in values:
        if key not in by_name:
            names = list(by_name) or ["(this method has no hyperparameters)"]
            raise unknown(f"hyperparameter of {method}", key, names)
    return {
        name: spec.validate(values[name], method) if name in values else spec.default for name, spec in by_name.items()
    }
