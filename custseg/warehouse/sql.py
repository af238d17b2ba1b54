"""Building SQL text safely: the one place identifiers and literals are quoted.

Values from data, files, headers, configuration or users are always bound parameters (``%s``), never
formatted into SQL. What cannot be a parameter goes through this module:

* a schema, table or column name: :func:`quote_ident` / :func:`qualified` (double quotes, doubled
  inside), after an allow-list check wherever the name comes from configuration;
* a constant of the code itself that SQL must hold as text (a hash namespace, a country code checked
  to be digits): :func:`quote_literal`.
"""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """A quoted SQL identifier: ``a"b`` becomes ``"a""b"`` (the same rule on DuckDB and PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    """``"schema"."table"``, each part quoted."""
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def quote_literal(value: str) -> str:
    """A SQL string literal, quotes doubled. Only for the code's own constants: data is bound."""
    return "'" + value.replace("'", "''") + "'"
