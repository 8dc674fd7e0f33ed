"""Redaction of secret-looking values before anything is shown or logged.

The admin, the API, the CLI and the log filter share this module.

- A mapping value is redacted when its key names a secret (:func:`is_secret_key`).
  A key is read as ``_``-separated lower-case parts (camelCase, ``-``, ``.``
  and spaces read as ``_``: ``X-Api-Key`` is ``x_api_key``, ``accessToken`` is
  ``access_token``), and it names a secret when some of its parts spell one of
  the secret words:

  - whole parts only: ``db_pass`` and ``pwd`` match, ``bypass``, ``compass``,
    ``passenger``, ``author`` and ``monkey`` do not;
  - a plural of the last part matches (``passwords``, ``credentials``,
    ``api_keys``), except for ``token``: ``max_tokens`` and ``prompt_tokens``
    count tokens, they do not hold one;
  - a secret word of six letters or more also matches at the end of a part
    written as one word (``dbpassword``, ``clientsecret``, ``accesstoken``);
  - a key whose last part describes a secret rather than holding it
    (``token_count``, ``token_type``, ``password_length``) is not secret.

  ``JOBS_REDACT_KEYS`` adds words to the built-in list.
- Free text (messages, tracebacks, string values, query strings) loses the
  values of ``key=value`` / ``key: value`` pairs whose key is secret by the
  same rules, ``Bearer``/``Basic`` credentials, passwords in URLs, our ``tbx_…``
  API keys (the public prefix stays, to identify the key) and well-known vendor
  key shapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from jobs.conf import jobs_settings

#: Words that mark a key as secret, whatever the settings say (``_`` separates parts).
BUILTIN_SECRET_WORDS: tuple[str, ...] = (
    "password",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "auth",
    "authorization",
    "credential",
    "creds",
    "cookie",
    "session_id",
    "sessionid",
    "session_key",
    "private_key",
    "jwt",
)

#: Words whose plural is not secret: ``max_tokens``, ``prompt_tokens`` are counts.
_NO_PLURAL = frozenset({"token"})

#: A word this long also matches at the end of a one-word part (``dbpassword``);
#: shorter ones would catch ``bypass`` (pass) or ``oauth`` (auth).
_MIN_SUFFIX_WORD = 5

#: Last parts of a key that describe a secret rather than hold it (``token_count``).
_DESCRIBING_PARTS = frozenset({"count", "counts", "length", "limit", "type", "usage"})

#: What a redacted value is replaced with.
REDACTED = "[redacted]"

_FIXED_TEXT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Our API keys: keep the non-secret prefix, which identifies the key.
    (re.compile(r"\b(tbx_[0-9a-f]{8})_[A-Za-z0-9_\-]{8,}"), rf"\1_{REDACTED}"),
    # Authorization headers: "Bearer <token>", "Basic <b64>", "Token <key>", "Api-Key <key>".
    (
        re.compile(r"\b(Bearer|Basic|Token|Api-Key)\s+[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE),
        rf"\1 {REDACTED}",
    ),
    # Passwords in URLs: scheme://user:password@host.
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^:/@\s]*:)[^@\s/]+@", re.IGNORECASE), rf"\1{REDACTED}@"),
    # Well-known vendor key shapes (OpenAI, SendGrid).
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), REDACTED),
    (re.compile(r"\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}"), REDACTED),
)


def secret_words() -> tuple[str, ...]:
    """The built-in words plus ``JOBS_REDACT_KEYS``, normalised."""
    extra = jobs_settings.redact_keys
    return _with_extra_words(extra) if extra else BUILTIN_SECRET_WORDS


@lru_cache(maxsize=16)
def _with_extra_words(extra: tuple[str, ...]) -> tuple[str, ...]:
    return BUILTIN_SECRET_WORDS + tuple(_normalise(word) for word in extra if word.strip())


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[^a-z0-9]+")


def _normalise(key: str) -> str:
    return _SEPARATORS.sub("_", _CAMEL.sub("_", key.strip()).lower()).strip("_")


@lru_cache(maxsize=16)
def _key_test(words: tuple[str, ...]) -> Callable[[str], bool]:
    """``is_secret_key`` for one word list: a pattern over the normalised key, cached per key."""
    alternatives = []
    for word in dict.fromkeys(words):  # keeps the order, drops repeats
        if not word:
            continue
        plural = "" if word in _NO_PLURAL or word.endswith("s") else "s?"
        joined = "_" not in word and len(word) >= _MIN_SUFFIX_WORD
        alternatives.append(f"{'[a-z0-9]*' if joined else ''}{re.escape(word)}{plural}")
    if not alternatives:
        return lambda key: False
    pattern = re.compile(rf"(?:^|_)(?:{'|'.join(alternatives)})(?:_|$)")

    @lru_cache(maxsize=4096)
    def test(key: str) -> bool:
        normalised = _normalise(key)
        if pattern.search(normalised) is None:
            return False
        head, _, last = normalised.rpartition("_")
        return not (head and last in _DESCRIBING_PARTS)

    return test


def is_secret_key(key: object, words: Iterable[str] | None = None) -> bool:
    """Whether a mapping key looks like it holds a secret (the rules are in the module doc)."""
    if not isinstance(key, str):
        return False
    return _key_test(tuple(words) if words is not None else secret_words())(key)


def redact(value: Any, *, key: str | None = None) -> Any:
    """A copy of a JSON-like value with secrets replaced; the input is never modified.

    Values under secret-looking keys are replaced at any depth, and strings are
    scrubbed with :func:`redact_text`.
    """
    words = secret_words()
    test = _key_test(words)
    if key is not None and test(key) and value not in (None, ""):
        return REDACTED
    return _redact(value, words, test, 0)


def _redact(value: Any, words: tuple[str, ...], test: Callable[[str], bool], depth: int) -> Any:
    if depth > 16 or type(value) in _SCALARS:
        return value
    if isinstance(value, str):
        return _redact_text(value, words)
    if isinstance(value, dict):
        return {
            k: REDACTED
            if isinstance(k, str) and test(k) and item not in (None, "")
            else _redact(item, words, test, depth + 1)
            for k, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item, words, test, depth + 1) for item in value]
    return value


_SCALARS = frozenset({int, float, bool, type(None)})


# --- Free text ------------------------------------------------------------------------

#: A ``key=`` or ``key:`` of free text (``password=``, ``"token": ``, ``X-Api-Key: ``);
#: :func:`is_secret_key` decides whether its value is a secret.
_PAIR_KEY = re.compile(r"""(?<![\w-])["']?(?P<name>[A-Za-z0-9][\w-]*+)["']?[ \t]*[:=][ \t]*""")
#: The value after a secret key: quoted, or up to a space or delimiter.
_PAIR_VALUE = re.compile(
    r"""(?ix)(?:bearer\s+|basic\s+|token\s+)?(?:"[^"]*"|'[^']*'|[^\s"',;&}\])]+)"""
)


def redact_text(text: str) -> str:
    """Free text (error messages, tracebacks, log lines) with secrets masked."""
    return _redact_text(text, secret_words())


#: Every pattern of :func:`_redact_text` needs one of these; text without them is left as is.
_MAY_HOLD_SECRET = re.compile(
    r"[:=]|tbx_|sk-|SG\.|\b(?:bearer|basic|token|api-key)\s", re.IGNORECASE
)


#: Lower-case substrings, one of which every match of ``_MAY_HOLD_SECRET`` contains.
_MAY_HOLD_SECRET_PARTS = (":", "=", "tbx_", "sk-", "sg.", "bearer", "basic", "token", "api-key")


def _may_hold_secret(text: str) -> bool:
    # Substring tests run at memory speed; the case-insensitive regex, with no
    # literal to anchor on, is slow over a bulk submission's long log line
    # (bench/HISTORY.md).
    # Only ASCII text: the regex's case-insensitive letters also match a few
    # non-ASCII ones (the Kelvin sign, the long s, the dotless i).
    if ":" in text or "=" in text:
        return True
    if text.isascii():
        lowered = text.lower()
        for part in _MAY_HOLD_SECRET_PARTS:  # a loop: cheaper than any() over a generator
            if part in lowered:
                break
        else:
            return False
    return _MAY_HOLD_SECRET.search(text) is not None


def _redact_text(text: str, words: tuple[str, ...]) -> str:
    if not text or not _may_hold_secret(text):
        return text
    if ":" in text or "=" in text:
        text = _redact_pairs(text, _key_test(words))
    for pattern, replacement in _FIXED_TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_pairs(text: str, test: Callable[[str], bool]) -> str:
    # A loop rather than one substitution: the value after a key that is not
    # secret ("error: password=x") may itself start a secret pair.
    out: list[str] = []
    done = 0
    match = _PAIR_KEY.search(text)
    while match is not None:
        end = match.end()
        if test(match["name"]):
            value = _PAIR_VALUE.match(text, end)
            if value is not None:
                out.append(text[done:end])
                out.append(REDACTED)
                done = end = value.end()
        match = _PAIR_KEY.search(text, end)
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)


# --- URLs and query strings -------------------------------------------------------------


def redact_query_string(query: str) -> str:
    """A URL query string with the values of secret parameters (``api_key=``, ``token=``) masked.

    Parameters are judged by :func:`is_secret_key`, other values are scrubbed
    like free text; untouched parameters keep their exact encoding.
    """
    if not query:
        return query
    words = secret_words()
    test = _key_test(words)
    pieces = query.split("&")
    changed = False
    for index, piece in enumerate(pieces):
        raw_name, equals, raw_value = piece.partition("=")
        if not equals or not raw_value:
            continue
        if test(unquote_plus(raw_name)):
            pieces[index] = f"{raw_name}={REDACTED}"
            changed = True
            continue
        value = unquote_plus(raw_value)
        scrubbed = _redact_text(value, words)
        if scrubbed != value:
            pieces[index] = f"{raw_name}={quote_plus(scrubbed, safe='[]')}"
            changed = True
    return "&".join(pieces) if changed else query


def redact_url(url: str) -> str:
    """A URL or request target (``/path?query``) with its secrets masked."""
    head, question, query = url.partition("?")
    head = redact_text(head)
    return f"{head}?{redact_query_string(query)}" if question else head
