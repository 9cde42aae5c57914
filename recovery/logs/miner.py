"""A small streaming Drain miner (He et al., 2017) with masks for what varies in Node logs.

Why our own and not drain3: drain3 0.9.11 pins exact old versions of jsonpickle and cachetools
and persists its state as a pickled blob; here the state is the templates themselves (rows in
SQLite), reloaded into the tree on start, so the same message maps to the same template
tomorrow, on another host, and after an upgrade. ~150 lines, deterministic, no dependencies.

The algorithm: mask variable parts (numbers, ids, addresses, durations, quoted values),
split into tokens, descend a tree keyed by the token count and the first `PREFIX` tokens,
and in that leaf pick the template with most equal tokens; if at least `threshold` of the
tokens are equal, the message joins it and differing positions become `<*>`, else it starts
a new template. Error codes (`ECONNREFUSED`) and error names (`TypeError:`) are anchors: a
message that differs from a template in one of them never joins it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

WILD = "<*>"
PREFIX = 2

# Masks that may span spaces or must win over the token masks: applied to the whole message,
# and only when a cheap test says they can match.
_WIDE: list[tuple[str, str]] = [
    ("TS", r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"),
    ("URL", r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+"),
    ("STR", r"(?<!\w)(?:'[^'\n]{0,400}'|\"[^\"\n]{0,400}\"|`[^`\n]{0,400}`)(?!\w)"),
]
# Masks for one token at a time; a token with no digit, `=` or `:` is left alone without a regex.
_TOKEN: list[tuple[str, str]] = [
    ("UUID", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    (
        "IP",
        r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])|\[?::(?:ffff:)?[0-9a-fA-F.:]*\]?(?::\d{1,5})?(?![\w:])",
    ),
    ("ID", r"(?<![\w-])(?:req(?:uest)?|trace|span|correlation|session|digest)[-_]?(?:id)?[=:]\s*[\w.-]+"),
    ("HEX", r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{12,}\b"),
    ("DUR", r"(?<![\w.])\d+(?:\.\d+)?(?:ms|µs|us|ns|s|m|h|d)\b"),
    ("NUM", r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w.])|(?<=[/=:#])\d+(?![\w.])"),
]
_WIDE_RES: dict[tuple[str, ...], re.Pattern[str]] = {}
_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_cache: dict[str, tuple[str, tuple[str, ...]]] = {}


def _wide_re(kinds: tuple[str, ...]) -> re.Pattern[str]:
    rx = _WIDE_RES.get(kinds)
    if rx is None:
        rx = _WIDE_RES[kinds] = re.compile("|".join(f"(?P<{n}>{r})" for n, r in _WIDE if n in kinds))
    return rx


_TOKEN_RE = re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in _TOKEN))
_NEEDS_TOKEN_MASK = re.compile(r"[\d=:]")
_ANCHOR = re.compile(r"^(?:E[A-Z0-9_]{3,}:?|[A-Za-z]*(?:Error|Exception)\]?:?|⨯)$")


def mask(message: str) -> tuple[str, list[str]]:
    """The message with variable parts replaced by `<NAME>` (whitespace normalised), and the values replaced."""
    hit = _cache.get(message)
    if hit is not None:
        return hit[0], list(hit[1])
    original = message
    params: list[str] = []

    def sub(m: re.Match[str]) -> str:
        kind = m.lastgroup or "VAR"
        value = m.group(0)
        if kind == "ID":
            cut = min(i for i in (value.find("="), value.find(":")) if i >= 0)
            params.append(value[cut + 1 :].strip())
            return f"{value[: cut + 1]}<ID>"
        params.append(value)
        return f"<{kind}>"

    kinds = tuple(
        k
        for k, present in (
            ("TS", "-" in message and _DATE.search(message) is not None),
            ("URL", "://" in message),
            ("STR", "'" in message or '"' in message or "`" in message),
        )
        if present
    )
    if kinds:
        message = _wide_re(kinds).sub(sub, message)
    tokens = message.split()
    needs = _NEEDS_TOKEN_MASK.search
    for i, tok in enumerate(tokens):
        if needs(tok):
            tokens[i] = _TOKEN_RE.sub(sub, tok)
    masked = " ".join(tokens)
    if len(_cache) > 20000:
        _cache.clear()
    _cache[original] = (masked, tuple(params))
    return masked, params


def template_id(first_text: str) -> str:
    """A stable id: the hash of the masked text that created the template."""
    return hashlib.sha256(first_text.encode("utf-8")).hexdigest()[:12]


@dataclass
class Template:
    id: str
    tokens: list[str]
    size: int = 0  # messages matched in this process (not persisted: counts live in SQLite)
    version: int = 1

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


@dataclass(frozen=True)
class Match:
    template: Template
    created: bool  # a new template
    changed: bool  # an existing template was generalised (a new version)
    params: list[str]


_HAS_DIGIT = re.compile(r"\d")


def _key_token(token: str) -> str:
    # Drain's rule: tokens with digits are likely variables, so they share the wildcard branch.
    return WILD if token == WILD or _HAS_DIGIT.search(token) else token


class Miner:
    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.tree: dict[tuple[str, ...], list[Template]] = {}
        self.by_id: dict[str, Template] = {}

    def _leaf(self, tokens: list[str]) -> tuple[str, ...]:
        return (str(len(tokens)), *[_key_token(t) for t in tokens[:PREFIX]])

    def load(self, tid: str, text: str, version: int = 1) -> None:
        """Put a stored template back (in creation order, so the tree is the one that was saved)."""
        tokens = text.split(" ") if text else []
        t = Template(tid, tokens, version=version)
        self.by_id[tid] = t
        self.tree.setdefault(self._leaf(tokens), []).append(t)

    def add(self, message: str) -> Match:
        masked, params = mask(message)
        tokens = masked.split()
        leaf = self.tree.setdefault(self._leaf(tokens), [])
        best, best_sim = None, -1.0
        n = len(tokens) or 1
        for t in leaf:
            same = 0
            for a, b in zip(t.tokens, tokens):
                if a == b:
                    same += 1
                elif a != WILD and (_ANCHOR.match(a) or _ANCHOR.match(b)):
                    same = -1
                    break
            if same < 0:
                continue
            sim = same / n
            if sim > best_sim:
                best, best_sim = t, sim
        if best is not None and (best_sim >= self.threshold or not tokens):
            changed = False
            extra: list[str] = []
            for i, (a, b) in enumerate(zip(best.tokens, tokens)):
                if a != b:
                    if a != WILD:
                        best.tokens[i] = WILD
                        changed = True
                    extra.append(b)
            if changed:
                best.version += 1
            best.size += 1
            return Match(best, False, changed, params + extra)
        text = " ".join(tokens)
        tid = template_id(text)
        while tid in self.by_id:  # the same text was generalised away from earlier: keep ids unique
            tid = template_id(tid + text)
        t = Template(tid, tokens, size=1)
        self.by_id[tid] = t
        leaf.append(t)
        return Match(t, True, False, params)
