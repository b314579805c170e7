"""Validation errors as users read them: one line per problem, starting with the field."""

from __future__ import annotations

from pydantic import ValidationError


def describe(error: ValidationError) -> str:
    """One line per problem, each starting with the field's path (spec.model.format: ...)."""
    lines = []
    for problem in error.errors(include_url=False):
        path = ".".join(str(part) for part in problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        lines.append(f"  {path}: {message}" if path else f"  {message}")
    return "\n".join(lines)
