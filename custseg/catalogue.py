"""The channel catalogue: every channel custseg ingests, declared once.

A channel is one kind of source system (the web shop, the tills, the CRM, ...). Its entry here says
everything the rest of custseg needs to know about it:

* its canonical ``raw`` table: columns, types, the checks ingestion applies row by row (required,
  minimum, allowed values, not in the future) and a description of each column;
* its key (one record), the event time that dates a record, and the column that orders two versions of
  one record;
* which columns identify the customer, for the load-time check and for identity resolution
  (``identity_keys``: which column carries a CRM id, an e-mail, a phone, a loyalty card);
* the Great Expectations checks of a landed batch beyond the generic ones (``checks``);
* how its rows reach the published tables (staging model, purchases), for the end-to-end reconciliation;
* the dbt source it is read through (``dbt_source``: ``models/staging/<dbt_source>/``).

What is derived from it, never written by hand:
``raw`` DDL (:func:`raw_table_ddl`), the mapping check of ``config/sources.yml`` (:mod:`custseg.sources`),
the GX raw suites (:meth:`Channel.raw_table`), identity resolution's record sources
(:data:`custseg.steps.identity.RECORD_SOURCES`), the reconciliation, the dbt sources YAML of each staging
folder and the "Canonical raw tables" section of ``docs/sources.md`` (:mod:`custseg.catalogue_docs`,
``custseg catalogue --write``; ``tests/test_catalogue.py`` fails on any disagreement). docs/architecture.md
"Adding a channel" is the recipe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date

from expectations.suites import (
    WARNING,
    Check,
    RawTable,
    between,
    in_set,
    matches,
    not_null,
)

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

#: Columns every raw table carries besides the canonical ones, with their descriptions.
LOAD_METADATA: tuple[tuple[str, str, str], ...] = (
    ("_partition_date", "date", "Landing date of the file the row came from (when custseg could first know it)."),
    ("_source_file", "text", "Path of the landing file."),
    ("_source_line", "bigint", "1-based data row (CSV) or record (JSONL, Parquet) number in that file."),
    ("_run_id", "text", "Airflow run that loaded the row."),
    ("_extras", "text", "JSON object of columns the file had beyond the mapping, kept rather than dropped."),
)

KNOWN_CURRENCIES = ("EUR", "GBP", "USD")
CURRENCY_REGEX = r"(?i)^\s*(?:" + "|".join(c.lower() for c in KNOWN_CURRENCIES) + r")\s*$"

#: The kinds of customer identifier identity resolution links (custseg/steps/identity.py).
IDENTITY_KEY_TYPES = ("crm_id", "email", "phone", "loyalty_card")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    required: bool = False
    #: Lower bound for numeric columns (rows below it are quarantined).
    min_value: float | None = None
    #: Allowed values, compared after trim + upper/lower case folding.
    allowed: tuple[str, ...] | None = None
    #: For timestamps: rows later than the end of the logical date are quarantined.
    not_future: bool = False


@dataclass(frozen=True)
class PurchaseFlow:
    """A channel whose rows are purchases: ``fct_purchases`` ids start with ``prefix``, and staged rows
    matching a documented rule (``exclusions``: reason, SQL condition on the staging model) are left out."""

    prefix: str
    exclusions: tuple[tuple[str, str], ...] = ()


def _no_checks(as_of_date: date) -> list[Check]:
    return []


@dataclass(frozen=True)
class Channel:
    name: str
    #: the raw table (``raw.<table>``) and the dbt source (``models/staging/<dbt_source>/``) it is read through
    table: str
    dbt_source: str
    #: what the system is and what one landing file holds (dbt source description, docs)
    description: str
    #: what one row is (the dbt source table's description)
    table_description: str
    key: str
    #: the timestamp that dates a record (GX: not null, not after the as-of date)
    event_time: str
    columns: tuple[Column, ...]
    #: the staging model that keeps one row per record (reconciliation)
    staging_model: str
    #: whether a record dated after the as-of date is left out until then (else only the landing date counts)
    visible_by_event_time: bool = True
    #: Columns that identify the customer; when ``customer_required``, a row with all of them empty
    #: cannot be attributed to anyone and is quarantined at load instead of vanishing downstream.
    customer_columns: tuple[str, ...] = ()
    customer_required: bool = False
    #: identity key type (IDENTITY_KEY_TYPES) -> the column that carries it, for channels whose records
    #: make and link customers; a channel without them only attaches to customers found elsewhere
    identity_keys: Mapping[str, str] = field(default_factory=dict)
    #: The column that orders several versions of one key (a CRM record updated twice in one file);
    #: rows of one key and version that differ are a conflict and are quarantined.
    version_column: str | None = None
    #: re-exports of one key within a batch are legitimate (staging keeps the latest): GX warns, not blocks
    duplicate_keys_expected: bool = False
    #: the channel's own GX checks of a landed batch, given the as-of date
    checks: Callable[[date], list[Check]] = _no_checks
    purchases: PurchaseFlow | None = None

    def __post_init__(self) -> None:
        # a misspelt column here would only show as a failing night: refuse it at import
        names = {c.name for c in self.columns}
        named = [self.key, self.event_time, *self.customer_columns, *self.identity_keys.values()]
        if self.version_column:
            named.append(self.version_column)
        unknown = [n for n in named if n not in names]
        bad_keys = [k for k in self.identity_keys if k not in IDENTITY_KEY_TYPES]
        if unknown or bad_keys or any(c.type not in SQL_TYPES for c in self.columns):
            raise ValueError(f"channel {self.name!r}: unknown columns {unknown}, identity key types {bad_keys} "
                             f"or column types")

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def raw_table(self, as_of_date: date) -> RawTable:
        """What the GX raw suite checks on this channel's table (``expectations.suites.raw_suite``)."""
        return RawTable(
            name=self.table,
            columns=tuple(c.name for c in self.columns),
            key=self.key,
            event_time=self.event_time,
            checks=tuple(self.checks(as_of_date)),
            duplicate_keys_expected=self.duplicate_keys_expected,
        )


def _shop_checks(as_of_date: date) -> list[Check]:
    return [
        between("order_total", 0),
        not_null("order_total", WARNING),
        matches("currency", CURRENCY_REGEX),
        in_set("device", ("web", "app")),
        between("discount_amount", 0, severity=WARNING),
        between("item_count", 0, severity=WARNING),
        in_set("order_status", ("completed", "refunded", "cancelled"), WARNING),
    ]


def _pos_checks(as_of_date: date) -> list[Check]:
    return [  # amount has any sign: returns are negative
        not_null("amount", WARNING),
        matches("currency", CURRENCY_REGEX),
        between("discount_amount", 0, severity=WARNING),
    ]


def _web_checks(as_of_date: date) -> list[Check]:
    return [in_set("platform", ("web", "app")), between("page_views", 0, severity=WARNING)]


def _crm_checks(as_of_date: date) -> list[Check]:
    return [
        matches("country", r"^[A-Z]{2}$", WARNING),
        in_set("gender", ("f", "m", "x"), WARNING),
        in_set("signup_source", ("web", "store", "app", "referral", "social"), WARNING),
        in_set("social_platform", SOCIAL_PLATFORMS, WARNING),
        between("birth_year", 1900, as_of_date.year, WARNING),
    ]


def _marketing_checks(as_of_date: date) -> list[Check]:
    return [in_set("event_type", ("send", "open", "click", "unsubscribe"))]


SOCIAL_PLATFORMS = ("instagram", "facebook", "tiktok", "x")
SOCIAL_INTERACTIONS = ("like", "comment", "share", "follow", "mention")


def _social_checks(as_of_date: date) -> list[Check]:
    return [
        in_set("interaction_type", SOCIAL_INTERACTIONS),
        in_set("platform", SOCIAL_PLATFORMS, WARNING),
        not_null("handle"),
    ]


def _support_checks(as_of_date: date) -> list[Check]:
    return [
        between("nps_score", 0, 10),
        in_set("contact_channel", ("email", "chat", "phone"), WARNING),
        in_set("topic", ("delivery", "returns", "product", "billing", "account"), WARNING),
        in_set("ticket_status", ("open", "solved"), WARNING),
    ]


PII = " (PII, stays in raw)."

CHANNELS: dict[str, Channel] = {
    c.name: c
    for c in (
        Channel(
            "online_orders",
            table="shop_orders",
            dbt_source="shop",
            description="Web shop order export (online orders channel), one CSV per landing date.",
            table_description="Orders as received, with canonical column names and UTC timestamps.",
            key="order_id",
            event_time="ordered_at",
            columns=(
                Column("order_id", "text", "Order number from the shop; exact duplicates and re-exports occur.",
                       required=True),
                Column("ordered_at", "timestamp", "Order time in UTC.", required=True, not_future=True),
                Column("customer_ref", "text", "CRM id when the shopper was logged in."),
                Column("customer_email", "text", "Email as typed" + PII),
                Column("customer_phone", "text", "Phone as typed" + PII),
                Column("currency", "text", "ISO 4217 code as received (case varies).", required=True,
                       allowed=KNOWN_CURRENCIES),
                Column("order_total", "numeric", "Amount paid after discount, in the order currency.",
                       required=True, min_value=0),
                Column("discount_amount", "numeric", "Discount granted, in the order currency.", min_value=0),
                Column("item_count", "integer", "Items in the basket.", min_value=0),
                Column("category", "text", "Main category of the basket."),
                Column("order_status", "text", "completed, refunded or cancelled."),
                Column("device", "text", "web or app."),
                Column("promo_code", "text", "Promotion or voucher code redeemed with the order; empty when none."),
            ),
            staging_model="stg_shop__orders",
            customer_columns=("customer_ref", "customer_email", "customer_phone"),
            customer_required=True,
            identity_keys={"crm_id": "customer_ref", "email": "customer_email", "phone": "customer_phone"},
            duplicate_keys_expected=True,
            checks=_shop_checks,
            purchases=PurchaseFlow("shop:", (
                ("cancelled", "is_cancelled"),
                ("no e-mail, phone or CRM id to attribute it to",
                 "not is_cancelled and crm_customer_id is null and email_hash is null and phone_hash is null"),
            )),
        ),
        Channel(
            "store_sales",
            table="pos_sales",
            dbt_source="pos",
            description="Store till export (store / POS channel), one Parquet file per landing date.",
            table_description="Receipts as received, with sale time converted from store-local time to UTC.",
            key="receipt_id",
            event_time="sold_at",
            columns=(
                Column("receipt_id", "text", "Receipt number.", required=True),
                Column("store_id", "text", "Store that made the sale.", required=True),
                Column("sold_at", "timestamp", "Sale time in UTC.", required=True, not_future=True),
                Column("loyalty_card", "text", "Loyalty card presented, formats vary; null for anonymous sales."),
                Column("currency", "text", "ISO 4217 code.", required=True, allowed=KNOWN_CURRENCIES),
                Column("amount", "numeric", "Amount paid; negative for returns.", required=True),
                Column("discount_amount", "numeric", "Discount granted.", min_value=0),
                Column("category", "text", "Main category."),
                Column("is_return", "boolean", "True for a return receipt."),
            ),
            staging_model="stg_pos__sales",
            # a till sale without a loyalty card is anonymous: loaded, and counted as such downstream
            customer_columns=("loyalty_card",),
            identity_keys={"loyalty_card": "loyalty_card"},
            checks=_pos_checks,
            purchases=PurchaseFlow("pos:", (("anonymous (no loyalty card)", "loyalty_card_key is null"),)),
        ),
        Channel(
            "web_events",
            table="web_sessions",
            dbt_source="web",
            description="Web and app analytics export, one JSONL file per landing date, one record per session.",
            table_description="Sessions as received.",
            key="session_id",
            event_time="started_at",
            columns=(
                Column("session_id", "text", "Session id.", required=True),
                Column("started_at", "timestamp", "Session start in UTC.", required=True, not_future=True),
                Column("crm_customer_id", "text", "CRM id when logged in."),
                Column("user_email", "text", "Email when known" + PII),
                Column("platform", "text", "web or app."),
                Column("page_views", "integer", "Pages viewed in the session.", min_value=0),
                Column("added_to_cart", "boolean", "Whether something was added to the cart."),
                Column("category", "text", "Product category most pages of the session were in; empty when none "
                       "(home page, account pages)."),
            ),
            staging_model="stg_web__sessions",
            customer_columns=("crm_customer_id", "user_email"),
            identity_keys={"crm_id": "crm_customer_id", "email": "user_email"},
            checks=_web_checks,
        ),
        Channel(
            "crm",
            table="crm_customers",
            dbt_source="crm",
            description="CRM customer master: customers created or changed on each landing date (CSV).",
            table_description="Customer records as received; a changed customer appears again on a later date.",
            key="crm_customer_id",
            event_time="updated_at",
            columns=(
                Column("crm_customer_id", "text", "CRM id.", required=True),
                Column("email", "text", "Email" + PII),
                Column("phone", "text", "Phone" + PII),
                Column("first_name", "text", "First name" + PII),
                Column("last_name", "text", "Last name" + PII),
                Column("street_address", "text", "Street address" + PII),
                Column("city", "text", "City."),
                Column("region", "text", "Region."),
                Column("country", "text", "ISO 3166 alpha-2 country."),
                Column("birth_year", "integer", "Year of birth.", min_value=1900),
                Column("gender", "text", "f, m, x or empty."),
                Column("signup_date", "date", "Date the customer signed up."),
                Column("signup_source", "text", "Where the customer signed up."),
                Column("loyalty_card", "text", "Loyalty card number, formats vary."),
                Column("updated_at", "timestamp", "Last change in the CRM, UTC.", required=True, not_future=True),
                Column("social_platform", "text", "Platform of the social-media handle the customer gave."),
                Column("social_handle", "text", "Social-media handle as entered (with or without @)" + PII),
                Column("birth_date", "date", "Date of birth" + PII + " Only the birth month and the ISO week of "
                       "the birthday are published."),
                Column("email_opt_in", "boolean", "Marketing e-mail consent as the CRM holds it: true = may be "
                       "e-mailed, false = objected (GDPR Art. 21), empty = unknown."),
                Column("sms_opt_in", "boolean", "Marketing SMS consent: true, false (objected) or empty (unknown)."),
                Column("ads_opt_in", "boolean", "Consent to being matched into ad-platform audiences: true, false "
                       "(objected) or empty (unknown)."),
                Column("consent_updated_at", "timestamp", "When the customer last gave or changed a marketing "
                       "consent, UTC: an e-mail unsubscribe after it overrides the CRM's e-mail flag."),
            ),
            staging_model="stg_crm__customers",
            visible_by_event_time=False,
            identity_keys={"crm_id": "crm_customer_id", "email": "email", "phone": "phone",
                           "loyalty_card": "loyalty_card"},
            version_column="updated_at",
            duplicate_keys_expected=True,
            checks=_crm_checks,
        ),
        Channel(
            "marketing",
            table="email_events",
            dbt_source="marketing",
            description="Email service provider export (sends, opens, clicks), one CSV per landing date.",
            table_description="Email events as received.",
            key="event_id",
            event_time="event_at",
            columns=(
                Column("event_id", "text", "Event id.", required=True),
                Column("campaign_id", "text", "Campaign."),
                Column("email", "text", "Recipient" + PII, required=True),
                Column("event_type", "text", "send, open, click or unsubscribe.", required=True),
                Column("event_at", "timestamp", "Event time in UTC.", required=True, not_future=True),
            ),
            staging_model="stg_marketing__email_events",
            checks=_marketing_checks,
        ),
        Channel(
            "support",
            table="support_tickets",
            dbt_source="support",
            description="Helpdesk export of support tickets with NPS answers, one JSONL file per landing date.",
            table_description="Tickets as received.",
            key="ticket_id",
            event_time="created_at",
            columns=(
                Column("ticket_id", "text", "Ticket id.", required=True),
                Column("created_at", "timestamp", "Ticket creation time in UTC.", required=True, not_future=True),
                Column("customer_email", "text", "Email" + PII),
                Column("customer_phone", "text", "Phone" + PII),
                Column("contact_channel", "text", "email, chat or phone."),
                Column("topic", "text", "Ticket topic as the helpdesk files it."),
                Column("subject", "text", "Free-text subject line of the ticket (what the customer wrote)."),
                Column("ticket_status", "text", "open or solved."),
                Column("nps_score", "integer", "NPS answer 0-10, null if the survey was not answered.", min_value=0),
            ),
            staging_model="stg_support__tickets",
            visible_by_event_time=False,
            customer_columns=("customer_email", "customer_phone"),
            identity_keys={"email": "customer_email", "phone": "customer_phone"},
            checks=_support_checks,
        ),
        Channel(
            "social",
            table="social_interactions",
            dbt_source="social",
            description="Social-media engagement export (likes, comments, shares, follows and mentions of the "
                        "brand's accounts and posts), one JSONL file per landing date.",
            table_description="Interactions as received, one per user action.",
            key="interaction_id",
            event_time="interacted_at",
            columns=(
                Column("interaction_id", "text", "Interaction id from the platform export.", required=True),
                Column("interacted_at", "timestamp", "Interaction time in UTC.", required=True, not_future=True),
                Column("platform", "text", "instagram, facebook, tiktok or x."),
                Column("post_id", "text", "The brand's post interacted with; empty for a follow or a mention."),
                Column("interaction_type", "text", "like, comment, share, follow or mention.", required=True,
                       allowed=SOCIAL_INTERACTIONS),
                Column("handle", "text", "The user's handle on the platform" + PII, required=True),
                Column("user_email", "text", "E-mail the user gave (lead form, contest entry), rarely set" + PII),
            ),
            staging_model="stg_social__interactions",
            # not an identity source: a handle names a customer only through the CRM's handle or the e-mail
            customer_columns=("handle", "user_email"),
            # platform exports repeat rows across pages of one export: staging keeps one per interaction
            duplicate_keys_expected=True,
            checks=_social_checks,
        ),
    )
}

#: Raw tables by name, for code that starts from a table (``raw.<table>``).
CHANNELS_BY_TABLE: dict[str, Channel] = {c.table: c for c in CHANNELS.values()}


def raw_table_ddl(schema: str, channel: Channel) -> str:
    cols = [f"{c.name} {SQL_TYPES[c.type]}" for c in channel.columns]
    cols += [f"{name} {SQL_TYPES[typ]}" for name, typ, _ in LOAD_METADATA]
    return f"create table if not exists {schema}.{channel.table} (\n    " + ",\n    ".join(cols) + "\n)"
