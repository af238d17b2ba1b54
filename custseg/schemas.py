"""Canonical raw schemas: the columns each channel has once it is landed in `raw`.

docs/sources.md documents the same tables for people; this module is what the code checks
against. A source in config/sources.yml maps its own file's columns onto one of these channels.
"""

from __future__ import annotations

from dataclasses import dataclass

SQL_TYPES = {
    "text": "text",
    "integer": "integer",
    "bigint": "bigint",
    "numeric": "numeric(18,2)",
    "double": "double precision",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}

#: Columns every raw table carries besides the canonical ones.
LOAD_METADATA: tuple[tuple[str, str], ...] = (
    ("_partition_date", "date"),
    ("_source_file", "text"),
    ("_source_line", "bigint"),
    ("_run_id", "text"),
    ("_extras", "text"),
)

KNOWN_CURRENCIES = ("EUR", "GBP", "USD")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool = False
    #: Lower bound for numeric columns (rows below it are quarantined).
    min_value: float | None = None
    #: Allowed values, compared after trim + upper/lower case folding.
    allowed: tuple[str, ...] | None = None
    #: For timestamps: rows later than the end of the logical date are quarantined.
    not_future: bool = False


@dataclass(frozen=True)
class Channel:
    name: str
    table: str
    key: str
    columns: tuple[Column, ...]
    #: Columns that identify the customer; when ``customer_required``, a row with all of them empty
    #: cannot be attributed to anyone and is quarantined at load instead of vanishing downstream.
    customer_columns: tuple[str, ...] = ()
    customer_required: bool = False
    #: The column that orders several versions of one key (a CRM record updated twice in one file);
    #: rows of one key and version that differ are a conflict and are quarantined.
    version_column: str | None = None

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


CHANNELS: dict[str, Channel] = {
    c.name: c
    for c in (
        Channel(
            "online_orders",
            "shop_orders",
            "order_id",
            (
                Column("order_id", "text", required=True),
                Column("ordered_at", "timestamp", required=True, not_future=True),
                Column("customer_ref", "text"),
                Column("customer_email", "text"),
                Column("customer_phone", "text"),
                Column("currency", "text", required=True, allowed=KNOWN_CURRENCIES),
                Column("order_total", "numeric", required=True, min_value=0),
                Column("discount_amount", "numeric", min_value=0),
                Column("item_count", "integer", min_value=0),
                Column("category", "text"),
                Column("order_status", "text"),
                Column("device", "text"),
            ),
            customer_columns=("customer_ref", "customer_email", "customer_phone"),
            customer_required=True,
        ),
        Channel(
            "store_sales",
            "pos_sales",
            "receipt_id",
            (
                Column("receipt_id", "text", required=True),
                Column("store_id", "text", required=True),
                Column("sold_at", "timestamp", required=True, not_future=True),
                Column("loyalty_card", "text"),
                Column("currency", "text", required=True, allowed=KNOWN_CURRENCIES),
                Column("amount", "numeric", required=True),
                Column("discount_amount", "numeric", min_value=0),
                Column("category", "text"),
                Column("is_return", "boolean"),
            ),
            # a till sale without a loyalty card is anonymous: loaded, and counted as such downstream
            customer_columns=("loyalty_card",),
        ),
        Channel(
            "web_events",
            "web_sessions",
            "session_id",
            (
                Column("session_id", "text", required=True),
                Column("started_at", "timestamp", required=True, not_future=True),
                Column("crm_customer_id", "text"),
                Column("user_email", "text"),
                Column("platform", "text"),
                Column("page_views", "integer", min_value=0),
                Column("added_to_cart", "boolean"),
            ),
            customer_columns=("crm_customer_id", "user_email"),
        ),
        Channel(
            "crm",
            "crm_customers",
            "crm_customer_id",
            (
                Column("crm_customer_id", "text", required=True),
                Column("email", "text"),
                Column("phone", "text"),
                Column("first_name", "text"),
                Column("last_name", "text"),
                Column("street_address", "text"),
                Column("city", "text"),
                Column("region", "text"),
                Column("country", "text"),
                Column("birth_year", "integer", min_value=1900),
                Column("gender", "text"),
                Column("signup_date", "date"),
                Column("signup_source", "text"),
                Column("loyalty_card", "text"),
                Column("updated_at", "timestamp", required=True, not_future=True),
            ),
            version_column="updated_at",
        ),
        Channel(
            "marketing",
            "email_events",
            "event_id",
            (
                Column("event_id", "text", required=True),
                Column("campaign_id", "text"),
                Column("email", "text", required=True),
                Column("event_type", "text", required=True),
                Column("event_at", "timestamp", required=True, not_future=True),
            ),
        ),
        Channel(
            "support",
            "support_tickets",
            "ticket_id",
            (
                Column("ticket_id", "text", required=True),
                Column("created_at", "timestamp", required=True, not_future=True),
                Column("customer_email", "text"),
                Column("customer_phone", "text"),
                Column("contact_channel", "text"),
                Column("topic", "text"),
                Column("ticket_status", "text"),
                Column("nps_score", "integer", min_value=0),
            ),
            customer_columns=("customer_email", "customer_phone"),
        ),
    )
}


def raw_table_ddl(schema: str, channel: Channel) -> str:
    cols = [f"{c.name} {SQL_TYPES[c.type]}" for c in channel.columns]
    cols += [f"{name} {SQL_TYPES[typ]}" for name, typ in LOAD_METADATA]
    return f"create table if not exists {schema}.{channel.table} (\n    " + ",\n    ".join(cols) + "\n)"
