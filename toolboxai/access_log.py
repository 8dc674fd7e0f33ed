"""Gunicorn's access log without secrets (``logger_class`` in gunicorn.conf.py).

A key sent as ``?api_key=`` (or ``?token=``, ``?access_token=``) is refused by
the API, but gunicorn writes the request line as it came, and no logging
filter sees its access log (the ``gunicorn.access`` logger does not
propagate). :class:`RedactingLogger` masks the atoms the access log format
uses: secret query parameters in the request line, the path, the query string
and URL headers (``Referer``, ``Location``), and whole values of secret-named
headers and environ entries (``%({authorization}i)s``, ``%({cookie}i)s``), by
the rules of ``jobs.redaction``; under the ASGI worker, uvicorn's own access
lines (:class:`UvicornAccessFilter`) too.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger

from jobs.redaction import REDACTED, is_secret_key, redact_query_string, redact_text, redact_url

#: ``%(name)s`` placeholders of an access log format.
_ATOM = re.compile(r"%\((?P<name>[^)]+)\)")

#: Atoms that hold a URL or a path (``f`` is the referer, ``U`` the path).
_URL_ATOMS = frozenset(
    {
        "U",
        "f",
        "{referer}i",
        "{location}o",
        "{http_referer}e",
        "{raw_uri}e",
        "{path_info}e",
        "{request_uri}e",
    }
)
#: Atoms that hold a query string.
_QUERY_ATOMS = frozenset({"q", "{query_string}e"})


def redact_atom(name: str, value: str) -> str:
    """One access log atom as it may be written."""
    if name == "r":  # "GET /path?query HTTP/1.1"
        method, space, rest = value.partition(" ")
        target, space2, protocol = rest.rpartition(" ")
        if space and space2:
            return f"{method} {redact_url(target)} {protocol}"
        return redact_url(value)
    if name in _URL_ATOMS:
        return redact_url(value)
    if name in _QUERY_ATOMS:
        return redact_query_string(value)
    if name.startswith("{") and name[-2:] in ("}i", "}o", "}e"):
        return REDACTED if is_secret_key(name[1:-2]) and value else redact_text(value)
    return value


class UvicornAccessFilter(logging.Filter):
    """uvicorn's access lines with the path's secrets redacted.

    Under the ASGI worker (``uvicorn_worker.UvicornWorker``) uvicorn writes its
    own access lines, ``'%s - "%s %s HTTP/%s" %d'`` with the path and query
    string as sent, through gunicorn's access log handlers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            record.args = (*args[:2], redact_url(str(args[2])), *args[3:])
        return True


class RedactingLogger(Logger):
    """Gunicorn's logger, with the access log's atoms redacted (:func:`redact_atom`)."""

    _format: str | None = None
    _used: tuple[str, ...] = ()

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.access_log.handlers:
            if not any(isinstance(f, UvicornAccessFilter) for f in handler.filters):
                handler.addFilter(UvicornAccessFilter())

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for name in self._used_atoms():
            value = atoms.get(name)
            if isinstance(value, str):
                atoms[name] = redact_atom(name, value)
        return atoms

    def _used_atoms(self) -> tuple[str, ...]:
        # The names the configured format reads ({...} names as SafeAtoms looks them
        # up, in lower case), parsed again only when the format changes (a reload).
        access_format = str(self.cfg.access_log_format)
        if access_format != self._format:
            names = (match["name"] for match in _ATOM.finditer(access_format))
            self._used = tuple(
                dict.fromkeys(name.lower() if name.startswith("{") else name for name in names)
            )
            self._format = access_format
        return self._used
