"""Credentials never reach a log line."""

from __future__ import annotations

import logging

from kubeinfer.redact import MASK, RedactingFilter, redact, secret_values

TOKEN = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345"


def test_token_shapes_are_masked() -> None:
    assert redact(f"using {TOKEN} now") == f"using hf{MASK} now"
    assert redact("Authorization: Bearer abc.def-123") == f"Authorization: Bearer {MASK}"
    assert redact("access_token=s3cr3t&x=1") == f"access_token={MASK}&x=1"
    assert redact('{"api_key": "k-123"}') == f'{{"api_key": "{MASK}"}}'
    # Ordinary words with "token" in them are left alone.
    assert redact("n_tokens = 5, tokenizer.json loaded") == "n_tokens = 5, tokenizer.json loaded"


def test_values_of_credential_variables_are_masked_wherever_they_appear() -> None:
    secrets = secret_values({"MY_PASSWORD": "opensesame", "PATH": "/usr/bin", "X_TOKEN": "abc"})
    assert secrets == ("opensesame",)  # too short to mask safely: abc
    assert redact("door said opensesame", secrets) == f"door said {MASK}"


def test_the_filter_rewrites_records_and_their_tracebacks() -> None:
    record = logging.LogRecord("x", logging.ERROR, "f", 1, "token %s", (TOKEN,), None)
    try:
        raise RuntimeError(f"refused {TOKEN}")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactingFilter({}).filter(record)
    assert TOKEN not in record.getMessage()
    assert TOKEN not in (record.exc_text or "")
