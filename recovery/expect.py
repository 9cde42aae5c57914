"""What an answer's body must hold (`expect_body`, `expect_body_regex`, `expect_json`): a 200 with
the wrong content is a failed probe of kind `body`, as Gatus and Uptime Kuma judge it.

Pure: takes the body's bytes (up to probe.BODY_CAP) and says what is wrong, or None.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_MISSING = object()


@dataclass(frozen=True)
class JsonExpectation:
    """`expect_json = { path = "status", equals = "ok" }`: the value at a dotted path (list items by
    index: `checks.0.ok`) must equal `equals`."""

    path: str
    equals: Any

    def problem(self, document: Any) -> str | None:
        value = _at(document, self.path)
        if value is _MISSING:
            return f"JSON has no {self.path!r}"
        if value != self.equals or isinstance(value, bool) != isinstance(self.equals, bool):
            return f"JSON {self.path} is {_short(json.dumps(value))}, expected {_short(json.dumps(self.equals))}"
        return None


def _at(document: Any, path: str) -> Any:
    value = document
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def body_problem(
    body: bytes, *, text: str | None = None, regex: str | None = None, json_expect: JsonExpectation | None = None
) -> str | None:
    """What is wrong with `body` for these expectations, in one short line; None when it holds them."""
    decoded = body.decode("utf-8", "replace")
    if text is not None and text not in decoded:
        return f"body does not contain {_short(repr(text))}"
    if regex is not None and re.search(regex, decoded) is None:
        return f"body does not match /{_short(regex)}/"
    if json_expect is not None:
        try:
            document = json.loads(decoded)
        except ValueError:
            return f"body is not JSON (first bytes {_short(repr(decoded[:40]))})"
        return json_expect.problem(document)
    return None
