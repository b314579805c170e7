"""Credentials kept out of log lines (the operator's and the runtime's logging use it).

Tokens reach the runtime only through its environment, from Secrets; a library's error
message or a debug line may still quote one. `redact` masks what looks like a credential,
and `RedactingFilter` applies it to every record before a handler formats it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping

MASK = "***"
# Environment variables whose values are credentials (the same names spec.env refuses as
# literals).
SECRET_ENV_NAME = re.compile(r"(?i).*(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|CREDENTIAL).*")
_SHAPES = (
    # Hugging Face tokens (hf_ and the older api_ forms).
    re.compile(r"\b(hf|api)_[A-Za-z0-9]{16,}\b"),
    # An Authorization header, as HTTP libraries print it.
    re.compile(r"(?i)(\bBearer\s+)[^\s'\",]+"),
    # key=value or "key": "value" where the key names a credential.
    re.compile(
        r"(?i)(\b[\w.-]*(?:token|secret|password|passwd|api_?key)[\"']?\s*[:=]\s*[\"']?)"
        r"[^\s'\",}&]+"
    ),
)
_MIN_SECRET_LENGTH = 6  # shorter values would mask ordinary words


def secret_values(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The values of credential-named variables, longest first."""
    found = {
        value
        for name, value in environ.items()
        if SECRET_ENV_NAME.fullmatch(name) and len(value) >= _MIN_SECRET_LENGTH
    }
    return tuple(sorted(found, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for value in secrets:
        text = text.replace(value, MASK)
    for shape in _SHAPES:
        text = shape.sub(lambda m: (m.group(1) if m.re.groups else "") + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with credentials masked (exception text included)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.secrets = secret_values(os.environ if environ is None else environ)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        record.msg, record.args = redact(message, self.secrets), None
        return True
