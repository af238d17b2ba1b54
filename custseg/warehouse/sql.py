"""Building SQL text safely: identifiers are quoted here, values are always bound parameters.

Nothing user-supplied is ever formatted into SQL; what cannot be a parameter (a schema, table or
column name) goes through :func:`quote_ident`, or an allow-list checked before any work starts.
"""

from __future__ import annotations


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
