"""One rule for "are we under CI", the same as scripts/test: CI is on when $CI is set to anything
but "", "false" or "0" (e.g. "true" or "1")."""

import os


def ci_on() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "false", "0")
