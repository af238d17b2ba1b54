"""Deterministic demo data generator: the seven landing sources of docs/sources.md plus the ground truth.

Why it exists: custseg must be demonstrable and testable without anybody's real customers, and the
segmentation, churn and identity-resolution code can only be scored against a *known* truth. So this
module simulates people (a latent behaviour type, an acquisition date, a BG/NBD-like purchase and
dropout process, a favourite category, a social-media account with an engagement level) and renders
what each channel system would export about them, dirt included:
case and whitespace noise, several phone and loyalty-card formats, time zones, currencies, exact
duplicates, late-arriving rows and a countable number of invalid rows.

Design choices that matter for callers:

* Everything comes from one ``SeedSequence(seed)``, split into one independent stream per concern,
  so the same arguments give byte-identical files and a change in one channel does not reshuffle
  the others. New streams are appended to ``_STREAMS`` (``SeedSequence.spawn`` keeps the earlier
  children), so a new channel or column leaves the bytes of the existing ones as they were.
  No wall clock, no hash order, no set iteration is used.
* Rows are simulated as numpy columns (no per-customer Python loops), sorted by landing date and
  rendered chunk by chunk with pyarrow compute, so 1,000,000 customers fit in a few minutes and a
  few GB. Text lines are built by joining columns; values never contain ``,``, ``"`` or newlines,
  which is asserted, so no CSV quoting or JSON escaping is needed.
* Landing date = UTC date of the event (plus 1-2 days for late rows), so every row of file ``D``
  has an event time on or before the end of ``D`` (UTC).
* Demo campaigns (``DEMO_CAMPAIGNS``, written to ``campaigns.yml``) have a known true effect: every
  person with a CRM id a campaign is meant for (bought by its first night, lapsed or recent as it says)
  gets a potential response from the last stream, and only the
  treated ones (the pipeline's holdout rule, under the warehouse's hash key) are appended to the end of
  their day's shop orders file, so every other row stays byte-identical; the truth keeps them all
  (``ground_truth/campaign_responses.parquet``; ``custseg.demo.truth.campaign_uplift_truth``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, timedelta
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from custseg.campaigns import is_control
from custseg.config import load_settings
from custseg.hashing import keyed_hash
from expectations.suites import RFM_SEGMENTS

DEFAULT_END_DATE = date(2026, 10, 31)

#: source -> (folder below the landing root, file extension), as in docs/sources.md.
SOURCE_FILES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "shop_orders": ("shop/orders", "csv"),
        "pos_sales": ("pos/sales", "parquet"),
        "web_sessions": ("web/sessions", "jsonl"),
        "crm_customers": ("crm/customers", "csv"),
        "email_events": ("marketing/email_events", "csv"),
        "support_tickets": ("support/tickets", "jsonl"),
        "social_interactions": ("social/interactions", "jsonl"),
    }
)
SOURCES: tuple[str, ...] = tuple(SOURCE_FILES)

#: Landing column names, in file order, exactly as docs/sources.md lists them.
SOURCE_COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "shop_orders": (
            "order_id", "order_ts", "customer_ref", "customer_email", "customer_phone", "currency",
            "order_total", "discount_amount", "item_count", "category", "order_status", "device", "promo_code",
        ),
        "pos_sales": (
            "receipt_id", "store_id", "sold_at_local", "store_tz", "loyalty_card", "currency", "amount",
            "discount_amount", "category", "is_return",
        ),
        "web_sessions": (
            "session_id", "started_at_ms", "crm_customer_id", "user_email", "platform", "page_views",
            "added_to_cart", "category",
        ),
        "crm_customers": (
            "crm_customer_id", "email", "phone", "first_name", "last_name", "street_address", "city",
            "region", "country", "birth_year", "gender", "signup_date", "signup_source", "loyalty_card",
            "updated_at", "social_platform", "social_handle", "birth_date", "email_opt_in", "sms_opt_in",
            "ads_opt_in", "consent_updated_at",
        ),
        "email_events": ("event_id", "campaign_id", "email", "event_type", "event_ts"),
        "support_tickets": (
            "ticket_id", "created_at", "customer_email", "customer_phone", "contact_channel", "topic",
            "subject", "ticket_status", "nps_score",
        ),
        "social_interactions": (
            "interaction_id", "interacted_at", "platform", "post_id", "interaction_type", "handle", "user_email",
        ),
    }
)  # fmt: skip

BEHAVIOUR_TYPES: tuple[str, ...] = (
    "frequent_omnichannel",
    "online_regular",
    "store_loyal",
    "discount_hunter",
    "one_off",
    "big_spender_rare",
)
#: Ground-truth behaviour_type of CRM customers who never buy.
PROSPECT = "prospect"

#: Kinds of deliberately invalid shop order rows (extra rows; see `_invalid_overrides`).
INVALID_KINDS: tuple[str, ...] = (
    "bad_timestamp",
    "non_numeric_total",
    "negative_total",
    "missing_order_id",
    "unknown_currency",
)

GUEST_SHARE = 0.03
PROSPECT_SHARE = 0.10
PREEXISTING_SHARE = 0.55
CRM_CHANGE_SHARE = 0.02
DUPLICATE_SHARE = 0.005
LATE_SHARE = 0.02
CAMPAIGN_EVERY_DAYS = 14
FIRST_CAMPAIGN_DAY = 3
ANONYMOUS_SESSION_SHARE = 0.25
SECONDS_PER_DAY = 86_400
_PAD_DAYS = 3  # calendar tables reach this far beyond the window (local times, late rows)
_CHUNK_ROWS = 750_000  # rows rendered at once when writing; bounds peak memory


@dataclass(frozen=True)
class BehaviourProfile:
    """Parameters of one latent behaviour type; distinct enough that clustering can recover them."""
    name: str
    crm_share: float  # share among CRM buyers
    guest_share: float  # share among guest buyers (online-only types)
    purchases_per_year: float  # Poisson rate while alive
    dropout_p: float  # probability of dropping out after each purchase (BG/NBD)
    mean_order_eur: float
    spend_shape: float  # gamma shape of the order value
    store_share: float  # share of purchases made in a store
    app_share: float  # share of online orders / sessions made in the app
    discount_share: float  # share of purchases with a discount
    discount_depth: tuple[float, float]
    category_breadth: float  # probability a purchase is outside the favourite category
    item_mean: float
    refund_rate: float  # online refunds and store returns
    card_prob: float  # has a loyalty card in the CRM
    email_opt_in: float
    email_open: float
    email_click: float  # given an open
    web_per_month: float  # sessions per month while active
    web_login: float
    cart_rate: float
    support_rate: float  # expected tickets over the customer's life
    nps_mean: float


PROFILES: tuple[BehaviourProfile, ...] = (
    BehaviourProfile("frequent_omnichannel", 0.10, 0.00, 22.0, 0.025, 70.0, 3.0, 0.40, 0.55, 0.15,
                     (0.05, 0.15), 0.65, 2.5, 0.03, 0.88, 0.70, 0.45, 0.50, 3.0, 0.75, 0.45, 0.30, 8.6),
    BehaviourProfile("online_regular", 0.22, 0.45, 7.0, 0.07, 55.0, 2.5, 0.05, 0.30, 0.15,
                     (0.05, 0.15), 0.35, 1.5, 0.04, 0.20, 0.55, 0.30, 0.35, 1.5, 0.55, 0.30, 0.12, 7.6),
    BehaviourProfile("store_loyal", 0.20, 0.00, 10.0, 0.045, 40.0, 3.0, 0.90, 0.20, 0.10,
                     (0.05, 0.10), 0.25, 2.0, 0.03, 0.95, 0.40, 0.18, 0.25, 0.4, 0.40, 0.15, 0.06, 8.4),
    BehaviourProfile("discount_hunter", 0.16, 0.20, 7.0, 0.12, 32.0, 2.0, 0.30, 0.35, 0.75,
                     (0.15, 0.45), 0.55, 2.0, 0.08, 0.50, 0.85, 0.55, 0.65, 2.0, 0.45, 0.35, 0.15, 6.4),
    BehaviourProfile("one_off", 0.20, 0.25, 2.4, 1.0, 45.0, 2.0, 0.25, 0.15, 0.20,
                     (0.05, 0.20), 0.0, 1.2, 0.05, 0.15, 0.35, 0.08, 0.20, 0.3, 0.25, 0.15, 0.08, 5.2),
    BehaviourProfile("big_spender_rare", 0.12, 0.10, 3.0, 0.10, 380.0, 3.5, 0.30, 0.20, 0.05,
                     (0.05, 0.10), 0.15, 0.6, 0.03, 0.40, 0.45, 0.25, 0.40, 0.8, 0.60, 0.40, 0.22, 8.0),
    BehaviourProfile(PROSPECT, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.30, 0.0,
                     (0.0, 0.0), 0.0, 0.0, 0.0, 0.08, 0.50, 0.12, 0.20, 0.2, 0.20, 0.05, 0.0, 7.0),
)  # fmt: skip
TYPE_NAMES: tuple[str, ...] = tuple(p.name for p in PROFILES)
_PROSPECT_CODE = TYPE_NAMES.index(PROSPECT)


def _profile_array(attr: str) -> np.ndarray:
    """One parameter of every profile as an array indexed by type code (vectorised lookups)."""
    return np.array([getattr(p, attr) for p in PROFILES], dtype=np.float64)


# --- reference data (ASCII, no commas or quotes: lines are joined without CSV quoting) ---------
COUNTRIES = ("GB", "IE", "DE", "FR", "NL", "US")
COUNTRY_WEIGHTS = (0.52, 0.05, 0.16, 0.06, 0.06, 0.15)
TIME_ZONES = ("Europe/London", "Europe/Berlin", "America/New_York", "America/Chicago")
_COUNTRY_TZ = np.array([0, 0, 1, 1, 1, 2], dtype=np.int8)
_COUNTRY_REGION = np.array([0, 0, 1, 1, 1, 2], dtype=np.int8)  # store region: London, Berlin, New York
CURRENCIES = ("EUR", "GBP", "USD")
_COUNTRY_CURRENCY = np.array([1, 0, 0, 0, 0, 2], dtype=np.int8)
_EUR_TO = np.array([1.0, 0.86, 1.08])  # rough FX, only to make amounts plausible per currency
#: (store_id, time zone index, currency index, region)
STORES: tuple[tuple[str, int, int, int], ...] = tuple(
    [(f"ST-{i:03d}", 0, 1, 0) for i in range(1, 11)]
    + [(f"ST-{i:03d}", 1, 0, 1) for i in range(11, 17)]
    + [(f"ST-{i:03d}", 2, 2, 2) for i in range(17, 21)]
)
_STORE_TZ = np.array([s[1] for s in STORES], dtype=np.int8)
_STORE_CURRENCY = np.array([s[2] for s in STORES], dtype=np.int8)
_REGION_STORES = tuple(np.array([i for i, s in enumerate(STORES) if s[3] == r]) for r in range(3))
CATEGORIES = ("Electronics", "Fashion", "Home", "Beauty", "Sports", "Books", "Toys", "Grocery")
_CATEGORY_WEIGHTS = np.array(
    [
        [0.20, 0.20, 0.15, 0.10, 0.10, 0.10, 0.05, 0.10],  # frequent_omnichannel
        [0.20, 0.25, 0.15, 0.10, 0.10, 0.10, 0.05, 0.05],  # online_regular
        [0.05, 0.20, 0.20, 0.15, 0.05, 0.05, 0.05, 0.25],  # store_loyal
        [0.05, 0.30, 0.10, 0.20, 0.05, 0.05, 0.10, 0.15],  # discount_hunter
        [0.15, 0.20, 0.15, 0.10, 0.10, 0.10, 0.10, 0.10],  # one_off
        [0.45, 0.15, 0.30, 0.00, 0.10, 0.00, 0.00, 0.00],  # big_spender_rare
        [0.125] * 8,  # prospect (unused)
    ]
)
FIRST_NAMES = (
    "Jane", "John", "Emma", "Oliver", "Amelia", "Harry", "Olivia", "Jack", "Isla", "George", "Ava",
    "Noah", "Mia", "Leo", "Sophie", "Lucas", "Hannah", "Felix", "Clara", "Max", "Lena", "Paul", "Marie",
    "Tom", "Grace", "Ethan", "Chloe", "Liam", "Zoe", "Adam", "Laura", "David", "Sarah", "Daniel", "Anna",
    "James", "Ella", "Samuel", "Julia", "Ben",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson", "Wright",
    "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson", "Clarke",
    "Mueller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Martin",
    "Bernard", "Dubois", "Moreau", "Jansen", "Visser", "Bakker", "Murphy", "Kelly", "Walsh", "Miller",
    "Davis",
)  # fmt: skip
STREETS = (
    "High Street", "Station Road", "Church Lane", "Mill Lane", "Park Avenue", "Victoria Road",
    "Green Lane", "Manor Road", "Kings Road", "Queens Road", "Main Street", "Oak Avenue", "Elm Street",
    "Maple Drive", "Bahnhofstrasse", "Hauptstrasse", "Rue de la Paix", "Kerkstraat",
)  # fmt: skip
#: Per country: (city, region) pairs.
CITIES: tuple[tuple[tuple[str, str], ...], ...] = (
    (("London", "Greater London"), ("Manchester", "Greater Manchester"), ("Birmingham", "West Midlands"),
     ("Leeds", "West Yorkshire"), ("Glasgow", "Scotland"), ("Bristol", "South West")),
    (("Dublin", "Leinster"), ("Cork", "Munster"), ("Galway", "Connacht")),
    (("Berlin", "Berlin"), ("Munich", "Bavaria"), ("Hamburg", "Hamburg"),
     ("Cologne", "North Rhine-Westphalia"), ("Frankfurt", "Hesse")),
    (("Paris", "Ile-de-France"), ("Lyon", "Auvergne-Rhone-Alpes"), ("Lille", "Hauts-de-France")),
    (("Amsterdam", "North Holland"), ("Rotterdam", "South Holland"), ("Utrecht", "Utrecht")),
    (("New York", "NY"), ("Boston", "MA"), ("Philadelphia", "PA"), ("Atlanta", "GA"), ("Miami", "FL")),
)  # fmt: skip
_CITY_FLAT = tuple(c for country in CITIES for c in country)
_CITY_START = np.cumsum([0] + [len(c) for c in CITIES])[:-1]
_CITY_COUNT = np.array([len(c) for c in CITIES])
EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example", "post.example")
SIGNUP_SOURCES = ("web", "store", "app", "referral", "social")
#: Category names as exports write them: as is, lower case, upper case (index category * 3 + case).
_CATEGORY_CASES = tuple(c for cat in CATEGORIES for c in (cat, cat.lower(), cat.upper()))
_CATEGORY_CASE_WEIGHTS = (0.8, 0.12, 0.08)

# --- social media (the catalogue's SOCIAL_PLATFORMS / SOCIAL_INTERACTIONS; tests/test_generate.py ties them) ---
SOCIAL_PLATFORMS = ("instagram", "facebook", "tiktok", "x")
SOCIAL_INTERACTIONS = ("like", "comment", "share", "follow", "mention")
#: Latent engagement level of an account holder (ground truth ``social_level``).
SOCIAL_LEVELS = ("none", "low", "medium", "high")
_SOCIAL_PLATFORM_WEIGHTS = (0.40, 0.25, 0.20, 0.15)
_SOCIAL_POST_CODES = ("IG", "FB", "TT", "X")
_SOCIAL_ACCOUNT_SHARE = (0.45, 0.20)  # non-guests, guests
_SOCIAL_LEVEL_WEIGHTS = (0.30, 0.35, 0.25, 0.10)
_SOCIAL_RATE = np.array([0.0, 1 / 60, 1 / 12, 1 / 3])  # interactions per day by level
_SOCIAL_ADVOCATE_SHARE = 0.25  # of account holders above level none
_SOCIAL_IN_CRM_SHARE = 0.70  # of CRM customers with an account: the CRM holds platform and handle
_SOCIAL_EMAIL_SHARE = 0.12  # rows with an e-mail (lead forms, contest entries)
_SOCIAL_FOLLOW_SHARE = 0.40  # a person's first interaction in the window is a follow
_SOCIAL_STRANGER_SHARE = 0.10  # interactions by people who are nobody's customer
_SOCIAL_FADE_DAYS = 45.0  # activity decays after churn like e-mail opens
_SOCIAL_POSTS_BEFORE = 400  # brand posts per platform published before the window; then one every 2 days
#: Interaction type weights (SOCIAL_INTERACTIONS order): advocates share and mention, others never do.
_SOCIAL_TYPES_ADVOCATE = (0.42, 0.23, 0.20, 0.0, 0.15)
_SOCIAL_TYPES_OTHER = (0.72, 0.28, 0.0, 0.0, 0.0)
_SOCIAL_TYPES_STRANGER = (0.60, 0.15, 0.06, 0.15, 0.04)
#: Words of strangers' handles: no first or last name, so they never equal a customer's handle.
_STRANGER_WORDS = (
    ("urban", "daily", "coffee", "sunny", "wild", "pixel", "retro", "cozy", "happy", "city", "indie", "lazy"),
    ("vibes", "lover", "life", "style", "fan", "hunter", "days", "finds", "club", "moments", "diaries", "looks"),
)  # fmt: skip

# --- support ticket subjects (tests/test_generate.py ties them to dbt_project/seeds/ticket_topic_keywords.csv) ---
SUPPORT_TOPICS = ("delivery", "returns", "product", "billing", "account")
#: Subject lines per topic (SUPPORT_TOPICS order), in the customer's words: each contains a keyword of
#: its topic in the keyword seed and none of another topic's.
SUPPORT_SUBJECTS: tuple[tuple[str, ...], ...] = (
    ("Where is my parcel?", "Delivery is late", "Courier never came", "Tracking number does not work",
     "Package not delivered yet"),
    ("Refund for my return", "How do I return this?", "Exchange for a bigger size", "Still waiting for my refund"),
    ("Item arrived broken", "Damaged on arrival", "Wrong item in my order", "Faulty product",
     "Defective zip on my jacket"),
    ("Charged twice", "Question about my invoice", "Payment failed", "Voucher not accepted at checkout"),
    ("Cannot log in", "Reset my password", "Please unsubscribe me", "Close my account"),
)  # fmt: skip
#: Subjects that name no topic (no keyword of the seed), on ~10% of tickets.
GENERIC_SUBJECTS = ("Question", "Hello", "Feedback", "Quick question", "Help please")
_GENERIC_SUBJECT_SHARE = 0.10
_SUBJECT_FLAT = tuple(s for topic in SUPPORT_SUBJECTS for s in topic) + GENERIC_SUBJECTS
_SUBJECT_START = np.cumsum([0] + [len(t) for t in SUPPORT_SUBJECTS])  # last entry: start of the generic ones
_SUBJECT_COUNT = np.array([len(t) for t in SUPPORT_SUBJECTS] + [len(GENERIC_SUBJECTS)])
_SUBJECT_CASE_WEIGHTS = (0.90, 0.08, 0.02)  # as written, lower case, upper case

# --- promotion codes on discounted online orders ---
PROMO_CODES = ("SPRING10", "SUMMER15", "WELCOME15", "VIP20", "NEWSLETTER10", "BLACKFRIDAY25")
_PROMO_CODE_WEIGHTS = (0.22, 0.20, 0.18, 0.12, 0.18, 0.10)
_PROMO_SHARE = 0.70  # of orders with a discount; the others were discounted without a code
#: as issued, lower case, title case ("Spring10"), leading space, trailing space
_PROMO_VARIANT_WEIGHTS = (0.86, 0.06, 0.03, 0.02, 0.03)

# --- demo campaigns with a known true effect (written to campaigns.yml; ground truth campaign_responses) ---


@dataclass(frozen=True)
class DemoCampaign:
    """A campaign the generator plants: its campaigns.yml entry and its true effect.

    Every non-guest person has, per campaign, a potential response: with `response_probability` one
    extra web-shop order of a lognormal amount (mean `mean_response_eur`, EUR) on a day uniform in
    (start_date, start_date + conversion_window_days]. Only the treated (not held out by the holdout
    rule) get it written to the landing files, so the true effect is known for control people too.
    """
    campaign_id: str
    description: str
    target_rfm_segments: tuple[str, ...]
    response_probability: float  # u: the share of people the campaign makes buy once more
    mean_response_eur: float = 60.0
    conversion_window_days: int = 2
    #: half the audience held out: the test dataset is small, and the treated half's extra orders, kept
    #: modest, are all the last two days of demo data gain
    control_share: float = 0.5
    #: start_date is this many days before the data's last day, end_date is that last day; a short
    #: window fits the responses into the data (tests run the three nights end-2, end-1, end)
    starts_days_before_end: int = 2
    #: who can respond, by the days from their last purchase to the first night (both ends inclusive): the
    #: customers the campaign is meant for (lapsed ones for a win-back, recent ones for perks). The
    #: generator cannot know the pipeline's segments, so this only approximates the target; the truth is
    #: computed over the audience the pipeline actually assigned, where a member who could not respond
    #: has no effect.
    lapsed_days: tuple[int, int] = (0, 10_000)

    def dates(self, end_date: date) -> tuple[date, date]:
        """(start_date, end_date) of the campaign for data ending `end_date`."""
        return end_date - timedelta(days=self.starts_days_before_end), end_date


DEMO_CAMPAIGNS: tuple[DemoCampaign, ...] = (
    DemoCampaign("demo-winback-voucher", "Demo: a voucher for lapsing customers (true response 25%)",
                 ("At Risk", "Can't Lose Them", "Hibernating", "About To Sleep", "Need Attention", "Lost"), 0.25,
                 lapsed_days=(45, 10_000)),
    DemoCampaign("demo-loyalty-perks", "Demo: perks for the best customers (true response 15%)",
                 ("Champions", "Loyal", "Potential Loyalist", "New", "Promising"), 0.15, lapsed_days=(0, 44)),
    DemoCampaign("demo-newsletter-no-effect", "Demo: a newsletter that changes nothing (true response 0)",
                 RFM_SEGMENTS, 0.0),
)  # fmt: skip
#: sigma of the log of a response amount: mean +- ~55% (a basket, not a fixed voucher value)
_RESPONSE_LOG_SIGMA = 0.5
_RESPONSE_MIN_CENTS = 100  # a response order is worth at least 1 EUR

#: Share of the people born in a leap year whose birthday is 29 February (at least one when anyone is),
#: far above the natural 1/366 so that every run exercises the leap-day birthday.
_LEAP_DAY_SHARE = 0.005

# Local-hour profiles of when things happen (weights per hour 0..23).
_SHOP_HOURS = np.array([2, 1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 7, 7, 6, 6, 6, 7, 8, 10, 11, 10, 7, 4], float)
_POS_HOURS = np.array([0] * 9 + [4, 6, 8, 10, 9, 7, 7, 8, 9, 8, 6] + [0] * 4, float)
_SUPPORT_HOURS = np.array([0] * 8 + [5, 8, 9, 9, 8, 8, 8, 8, 7, 6, 5, 4, 3, 2] + [0] * 2, float)

# Slots of the per-person key table: every identifier a person can appear under, as written.
_SLOT_CRM = 0
_SLOT_EMAIL = 1  # 5 variants
_SLOT_PHONE = 6  # 6 formats of the original phone
_SLOT_PHONE_NEW = 12  # 6 formats of the phone after a CRM change
_SLOT_CARD = 18  # 5 formats of the loyalty card
_N_SLOTS = 23
_N_EMAIL_VARIANTS, _N_PHONE_VARIANTS, _N_CARD_VARIANTS = 5, 6, 5

_L = pa.large_string()


# ================================================================================================
# Public result
# ================================================================================================
@dataclass(frozen=True)
class GenerationSummary:
    """What `generate` wrote: where, which window, and how many rows of each kind per source."""
    out_dir: Path
    landing_dir: Path
    ground_truth_dir: Path
    start_date: date
    end_date: date
    customers: int
    seed: int
    rows: Mapping[str, int]  # source -> data rows written (duplicates and invalid rows included)
    invalid_rows: Mapping[str, int]  # source -> rows that ingestion must quarantine
    invalid_kinds: Mapping[str, int]  # INVALID_KINDS entry -> rows (all in shop_orders)
    duplicate_rows: Mapping[str, int]  # source -> extra exact copies of a row in the same file
    late_rows: Mapping[str, int]  # source -> rows landing 1-2 days after their event date
    #: DEMO_CAMPAIGNS campaign_id -> response orders written to shop_orders (the treated people's)
    campaign_responses: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


# ================================================================================================
# Calendar and time zones
# ================================================================================================
@dataclass(frozen=True)
class _Clock:
    """The simulated window. Times are int64 seconds since start_date 00:00 UTC."""
    start: date
    days: int
    hourly_offset: np.ndarray  # [tz, hour since start - PAD days] -> UTC offset in seconds
    noon_offset: np.ndarray  # [tz, day] -> offset at noon UTC, used to place local hours in a day
    date_strings: pa.Array  # ISO date of day index (i - PAD)

    @property
    def n_seconds(self) -> int:
        return self.days * SECONDS_PER_DAY

    def day_string(self, day: int) -> str:
        return (self.start + timedelta(days=day)).isoformat()


def _make_clock(start: date, days: int) -> _Clock:
    """Precompute hourly UTC offsets per zone (DST switches happen on whole UTC hours) and date strings."""
    first = pd.Timestamp(start) - pd.Timedelta(days=_PAD_DAYS)
    hours = pd.date_range(first, periods=(days + 2 * _PAD_DAYS) * 24, freq="h", tz="UTC")
    naive = hours.tz_localize(None)
    offsets = np.stack(
        [((hours.tz_convert(tz).tz_localize(None) - naive).total_seconds()).to_numpy() for tz in TIME_ZONES]
    ).astype(np.int64)
    noon_rows = (_PAD_DAYS + np.arange(days)) * 24 + 12
    dates = [(start + timedelta(days=int(i) - _PAD_DAYS)).isoformat() for i in range(days + 2 * _PAD_DAYS)]
    return _Clock(start, days, offsets, offsets[:, noon_rows], pa.array(dates, _L))


def _local_seconds_of_day(rng: np.random.Generator, n: int, weights: np.ndarray) -> np.ndarray:
    """Local wall-clock second of day drawn from an hourly profile (people shop in their evening)."""
    hour = rng.choice(24, size=n, p=weights / weights.sum())
    return hour.astype(np.int64) * 3600 + rng.integers(0, 3600, n)


def _place_in_day(clock: _Clock, day: np.ndarray, local_sod: np.ndarray, tz: np.ndarray) -> np.ndarray:
    """UTC seconds of an event on UTC day `day` whose local time of day is `local_sod`.

    Wrapping within the UTC day keeps the landing date equal to the simulated day while the local
    wall-clock time still follows the local-hour profile.
    """
    offset = clock.noon_offset[tz, day]
    return day.astype(np.int64) * SECONDS_PER_DAY + np.mod(local_sod - offset, SECONDS_PER_DAY)


def _exact_offset(clock: _Clock, utc: np.ndarray, tz: np.ndarray) -> np.ndarray:
    """UTC offset (seconds) in force in zone `tz` at UTC second `utc`."""
    return clock.hourly_offset[tz, utc // 3600 + _PAD_DAYS * 24]


# ================================================================================================
# Small vectorised formatting helpers (pyarrow compute on large_string)
# ================================================================================================
_TWO_DIGITS = pa.array([f"{i:02d}" for i in range(100)], _L)


def _s(value: str) -> pa.Scalar:
    return pa.scalar(value, _L)


def _join(*parts: pa.Array | pa.Scalar | str) -> pa.Array:
    """Concatenate string arrays/literals element-wise (no separator)."""
    args = [_s(p) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, _s(""))


def _lookup(table: tuple[str, ...] | list[str], codes: np.ndarray) -> pa.Array:
    """Map small integer codes onto strings."""
    return pc.take(pa.array(list(table), _L), pa.array(np.asarray(codes, dtype=np.int64)))


def _int_str(values: np.ndarray, width: int = 0) -> pa.Array:
    text = pc.cast(pa.array(np.asarray(values, dtype=np.int64)), _L)
    return pc.utf8_lpad(text, width=width, padding="0") if width else text


def _clock_strings(clock: _Clock, seconds: np.ndarray, sep: str = "T") -> pa.Array:
    """'YYYY-MM-DD<sep>HH:MM:SS' for seconds since the window start (may be slightly outside it)."""
    day = seconds // SECONDS_PER_DAY
    sod = seconds - day * SECONDS_PER_DAY
    date_part = pc.take(clock.date_strings, pa.array(day + _PAD_DAYS))
    hh = pc.take(_TWO_DIGITS, pa.array(sod // 3600))
    mm = pc.take(_TWO_DIGITS, pa.array(sod // 60 % 60))
    ss = pc.take(_TWO_DIGITS, pa.array(sod % 60))
    return _join(date_part, sep, hh, ":", mm, ":", ss)


def _offset_strings(offset: np.ndarray) -> pa.Array:
    """'+HH:MM' / '-HH:MM' for offsets in seconds."""
    values, inverse = np.unique(offset, return_inverse=True)
    labels = [
        f"{'+' if v >= 0 else '-'}{abs(v) // 3600:02d}:{abs(v) // 60 % 60:02d}" for v in values.tolist()
    ]
    return _lookup(labels, inverse)


def _money_strings(cents: np.ndarray) -> pa.Array:
    """'123.45' from integer cents (negative gives '-123.45')."""
    mag = np.abs(cents)
    text = _join(_int_str(mag // 100), ".", pc.take(_TWO_DIGITS, pa.array(mag % 100)))
    if (cents < 0).any():
        text = pc.if_else(pa.array(cents < 0), _join("-", text), text)
    return text


def _maybe(text: pa.Array, present: np.ndarray) -> pa.Array:
    """Null where not present."""
    return pc.if_else(pa.array(present), text, pa.scalar(None, _L))


def _csv_lines(columns: list[pa.Array]) -> pa.Array:
    """One CSV line per row; nulls become empty fields. Refuses values that would need quoting."""
    cells = [pc.fill_null(c, _s("")) for c in columns]
    for cell in cells:
        if len(cell) and pc.any(pc.match_substring_regex(cell, r'[,"\r\n]')).as_py():
            raise ValueError("generated CSV value contains a delimiter, quote or newline")
    return _join(pc.binary_join_element_wise(*cells, _s(",")), "\n")


def _json_lines(fields: list[tuple[str, pa.Array, bool]]) -> pa.Array:
    """One JSON object per row from (key, values, quote) triples; nulls become JSON null.

    Values are generated ASCII without quotes, backslashes or control characters (asserted), so
    wrapping strings in quotes is a correct JSON encoding.
    """
    parts: list[pa.Array | str] = []
    for i, (key, values, quote) in enumerate(fields):
        if quote and len(values) and pc.any(pc.match_substring_regex(values, r'["\\\x00-\x1f]')).as_py():
            raise ValueError(f"generated JSON value of {key!r} needs escaping")
        rendered = _join('"', values, '"') if quote else values
        parts += [("{" if i == 0 else ",") + f'"{key}":', pc.fill_null(rendered, _s("null"))]
    parts.append("}\n")
    return _join(*parts)


# ================================================================================================
# People
# ================================================================================================
@dataclass(frozen=True)
class _People:
    """Per-person latent state and attributes (index = person_id - 1)."""
    n: int
    is_guest: np.ndarray
    type_code: np.ndarray
    crm_num: np.ndarray  # 1-based CRM number, 0 for guests
    country: np.ndarray
    tz: np.ndarray
    acquired_at: np.ndarray  # float days since window start (0 for customers existing since the start)
    signup_sec: np.ndarray  # CRM signup, seconds since start (negative: before the window)
    has_card: np.ndarray
    home_store: np.ndarray
    opt_in: np.ndarray
    web_engagement: np.ndarray
    email_engagement: np.ndarray
    spend_scale: np.ndarray  # person's mean order value in EUR
    favourite_category: np.ndarray
    change_sec: np.ndarray  # CRM change time, -1 if none
    change_kind: np.ndarray  # 0 = new phone, 1 = moved
    first_idx: np.ndarray
    last_idx: np.ndarray
    city: np.ndarray  # index into _CITY_FLAT
    new_city: np.ndarray
    house: np.ndarray
    street: np.ndarray
    new_street: np.ndarray
    birth_year: np.ndarray  # 0 = not given
    gender: np.ndarray  # index into ("f", "m", "x", "")
    signup_source: np.ndarray
    crm_email_variant: np.ndarray
    crm_phone_variant: np.ndarray  # -1 = phone not given
    crm_card_variant: np.ndarray
    esp_email_variant: np.ndarray

    def phone_slot(self, person: np.ndarray, at_sec: np.ndarray) -> np.ndarray:
        """Slot base of the phone a person used at a time: the new one after a phone change."""
        changed = (self.change_kind[person] == 0) & (self.change_sec[person] >= 0)
        use_new = changed & (at_sec >= self.change_sec[person])
        return np.where(use_new, _SLOT_PHONE_NEW, _SLOT_PHONE)


def _make_people(rng: np.random.Generator, n: int, clock: _Clock) -> _People:
    """Draw who exists, of which type, where, since when, and the attributes the CRM holds."""
    is_guest = rng.random(n) < GUEST_SHARE
    prospect = ~is_guest & (rng.random(n) < PROSPECT_SHARE)
    crm_shares = _profile_array("crm_share")[:_PROSPECT_CODE]
    guest_shares = _profile_array("guest_share")[:_PROSPECT_CODE]
    type_code = np.full(n, _PROSPECT_CODE, dtype=np.int8)
    crm_buyer = ~is_guest & ~prospect
    type_code[crm_buyer] = rng.choice(_PROSPECT_CODE, size=int(crm_buyer.sum()), p=crm_shares)
    type_code[is_guest] = rng.choice(_PROSPECT_CODE, size=int(is_guest.sum()), p=guest_shares)

    country = rng.choice(len(COUNTRIES), size=n, p=COUNTRY_WEIGHTS).astype(np.int8)
    tz = _COUNTRY_TZ[country].copy()
    tz[(country == COUNTRIES.index("US")) & (rng.random(n) < 0.3)] = TIME_ZONES.index("America/Chicago")

    preexisting = rng.random(n) < PREEXISTING_SHARE
    acquired_at = np.where(preexisting, 0.0, rng.random(n) * clock.days)
    past_signup = -(rng.integers(1, 3 * 365, n) * SECONDS_PER_DAY + rng.integers(0, SECONDS_PER_DAY, n))
    signup_sec = np.where(preexisting, past_signup, (acquired_at * SECONDS_PER_DAY).astype(np.int64))

    has_card = ~is_guest & (rng.random(n) < _profile_array("card_prob")[type_code])
    region = _COUNTRY_REGION[country]
    home_store = np.zeros(n, dtype=np.int16)
    for r, stores in enumerate(_REGION_STORES):
        mask = region == r
        home_store[mask] = rng.choice(stores, size=int(mask.sum()))
    opt_in = ~is_guest & (rng.random(n) < _profile_array("email_opt_in")[type_code])
    favourite = np.zeros(n, dtype=np.int8)
    for code in range(len(PROFILES)):
        mask = type_code == code
        w = _CATEGORY_WEIGHTS[code]
        favourite[mask] = rng.choice(len(CATEGORIES), size=int(mask.sum()), p=w / w.sum())

    # A few CRM customers are re-exported later with a new phone or a new address.
    lo = np.maximum(signup_sec, 0) + 3600
    can_change = ~is_guest & (lo < clock.n_seconds - 3600) & (rng.random(n) < CRM_CHANGE_SHARE)
    change_sec = np.where(
        can_change, lo + (rng.random(n) * (clock.n_seconds - 1 - lo)).astype(np.int64), -1
    ).astype(np.int64)
    change_kind = rng.integers(0, 2, n).astype(np.int8)

    city_off = rng.integers(0, 1 << 30, n)
    city = _CITY_START[country] + city_off % _CITY_COUNT[country]
    step = 1 + rng.integers(0, 1 << 30, n) % (_CITY_COUNT[country] - 1)  # a move always changes city
    new_city = _CITY_START[country] + (city_off + step) % _CITY_COUNT[country]
    birth_year = np.clip(np.round(rng.normal(1983, 13, n)), 1940, 2007).astype(np.int64)
    birth_year[rng.random(n) < 0.08] = 0

    source_weights = np.array([[0.35, 0.25, 0.30, 0.05, 0.05], [0.15, 0.70, 0.10, 0.03, 0.02]])
    signup_source = np.where(
        type_code == BEHAVIOUR_TYPES.index("store_loyal"),
        rng.choice(5, size=n, p=source_weights[1]),
        rng.choice(5, size=n, p=source_weights[0]),
    )
    crm_phone_variant = rng.integers(0, _N_PHONE_VARIANTS, n)
    crm_phone_variant[rng.random(n) < 0.15] = -1
    return _People(
        n=n,
        is_guest=is_guest,
        type_code=type_code,
        crm_num=_crm_numbers(is_guest, signup_sec),
        country=country,
        tz=tz,
        acquired_at=acquired_at,
        signup_sec=signup_sec,
        has_card=has_card,
        home_store=home_store,
        opt_in=opt_in,
        web_engagement=rng.gamma(3.0, 1 / 3, n),
        email_engagement=rng.gamma(4.0, 1 / 4, n),
        spend_scale=_profile_array("mean_order_eur")[type_code] * rng.gamma(4.0, 1 / 4, n),
        favourite_category=favourite,
        change_sec=change_sec,
        change_kind=change_kind,
        first_idx=rng.integers(0, len(FIRST_NAMES), n),
        last_idx=rng.integers(0, len(LAST_NAMES), n),
        city=city,
        new_city=new_city,
        house=rng.integers(1, 250, n),
        street=rng.integers(0, len(STREETS), n),
        new_street=rng.integers(0, len(STREETS), n),
        birth_year=birth_year,
        gender=rng.choice(4, size=n, p=[0.47, 0.45, 0.03, 0.05]),
        signup_source=signup_source,
        crm_email_variant=rng.choice(_N_EMAIL_VARIANTS, size=n, p=[0.6, 0.2, 0.1, 0.05, 0.05]),
        crm_phone_variant=crm_phone_variant,
        crm_card_variant=rng.integers(0, _N_CARD_VARIANTS, n),
        esp_email_variant=rng.choice([0, 1, 3], size=n, p=[0.6, 0.25, 0.15]),
    )


def _crm_numbers(is_guest: np.ndarray, signup_sec: np.ndarray) -> np.ndarray:
    """CRM numbers count up in signup order, as a real CRM issues them (0 for guests)."""
    crm = np.flatnonzero(~is_guest)
    order = crm[np.lexsort((crm, signup_sec[crm]))]
    numbers = np.zeros(is_guest.size, dtype=np.int64)
    numbers[order] = np.arange(1, order.size + 1)
    return numbers


def _bijection(index: np.ndarray, modulus: int, multiplier: int, offset: int) -> np.ndarray:
    """Distinct pseudo-random numbers for distinct indices (multiplier coprime with modulus)."""
    return (index.astype(np.int64) * multiplier + offset) % modulus


def _make_key_table(rng: np.random.Generator, people: _People) -> pa.Array:
    """Every identifier each person can appear under, as written; slot-major (slot * n + person).

    Building them once lets every channel take() its strings and lets the ground truth name the
    exact keys that were emitted.
    """
    n = people.n
    idx = np.arange(n)
    crm_id = _maybe(_join("CRM-", _int_str(people.crm_num, 7)), ~people.is_guest)

    num = _int_str(_bijection(idx, 10**7, 7919, int(rng.integers(10**7))))
    sep = _lookup((".", "_", ""), rng.integers(0, 3, n))
    first = _lookup(FIRST_NAMES, people.first_idx)
    last = _lookup(LAST_NAMES, people.last_idx)
    domain_idx = rng.integers(0, len(EMAIL_DOMAINS), n)
    domain = _lookup(EMAIL_DOMAINS, domain_idx)
    domain_title = pc.utf8_capitalize(domain)
    lower = _join(pc.utf8_lower(first), sep, pc.utf8_lower(last), num, "@", domain)
    emails = [
        lower,
        _join(first, sep, last, num, "@", domain_title),
        _join(" ", lower, " "),
        pc.utf8_upper(lower),
        _join(first, sep, last, num, "@", domain, "  "),
    ]

    phone_offset = int(rng.integers(10**9))
    phones: list[pa.Array] = []
    for index, present in ((idx, np.ones(n, bool)), (idx + n, people.change_sec >= 0)):
        digits = _join("7", _int_str(_bijection(index, 10**9, 104_729, phone_offset), 9))
        head, tail = pc.utf8_slice_codeunits(digits, 0, 4), pc.utf8_slice_codeunits(digits, 4, 10)
        mid, end = pc.utf8_slice_codeunits(digits, 4, 7), pc.utf8_slice_codeunits(digits, 7, 10)
        formats = [
            _join("+44 ", head, " ", tail),
            _join("0", head, " ", tail),
            _join("0044-", head, "-", tail),
            _join("(0", head, ") ", mid, "-", end),
            _join("0", digits),
            _join("+44", digits),
        ]
        phones += [_maybe(f, present) for f in formats]

    card = _int_str(_bijection(idx, 10**8, 7907, int(rng.integers(10**8))), 8)
    c_head, c_tail = pc.utf8_slice_codeunits(card, 0, 4), pc.utf8_slice_codeunits(card, 4, 8)
    cards = [
        _join("LC ", c_head, " ", c_tail),
        _join("lc-", card),
        _join("LC", card),
        _join("LC-", c_head, "-", c_tail),
        _join("lc ", c_head, " ", c_tail),
    ]
    cards = [_maybe(c, people.has_card) for c in cards]
    slots = [crm_id, *emails, *phones, *cards]
    assert len(slots) == _N_SLOTS
    return pa.concat_arrays(slots)


def _keys(table: pa.Array, n: int, slot: np.ndarray | int, person: np.ndarray) -> pa.Array:
    return pc.take(table, pa.array(np.asarray(slot, dtype=np.int64) * n + person))


# ================================================================================================
# Purchases: the true buying and dropout process
# ================================================================================================
@dataclass(frozen=True)
class _Purchases:
    person: np.ndarray
    day: np.ndarray  # UTC day index
    in_store: np.ndarray
    protected: np.ndarray  # first purchase or the one after which the person dropped out
    email_driven: np.ndarray  # a discount hunter's purchase triggered by a campaign


def _campaign_days(days: int) -> np.ndarray:
    return np.arange(FIRST_CAMPAIGN_DAY, days, CAMPAIGN_EVERY_DAYS)


def _truncated_exponential(rng: np.random.Generator, rate: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Exp(rate) conditioned on being below `upper` (inverse CDF), so every buyer buys in the window."""
    u = rng.random(rate.shape)
    x = -np.log1p(u * np.expm1(-rate * upper)) / rate
    return np.minimum(x, np.nextafter(upper, 0))


def _simulate_purchases(
    rng: np.random.Generator, people: _People, days: int
) -> tuple[_Purchases, np.ndarray]:
    """Poisson purchases while alive, dropout with probability p after each one (BG/NBD).

    Returns the purchases and a per-person `dropped` flag (churned within the window). The loop runs
    over purchase number, not over customers, so its work is proportional to the rows produced.
    """
    buyers = np.flatnonzero(people.type_code != _PROSPECT_CODE)
    types = people.type_code[buyers]
    rate = _profile_array("purchases_per_year")[types] / 365.0 * rng.gamma(3.0, 1 / 3, buyers.size)
    mean_p = _profile_array("dropout_p")[types]
    p = np.where(mean_p >= 1.0, 1.0, rng.beta(np.maximum(mean_p * 20, 1e-3), (1 - mean_p) * 20 + 1e-3))
    acquired = people.acquired_at[buyers]
    preexisting = acquired == 0.0
    t = np.where(
        preexisting,
        _truncated_exponential(rng, rate, np.full(buyers.size, float(days))),
        acquired + _truncated_exponential(rng, np.full(buyers.size, 1 / 3), days - acquired),
    )
    who, when, number, last = [], [], [], []
    dropped = np.zeros(people.n, dtype=bool)
    active = np.arange(buyers.size)
    k = 0
    while active.size:
        drop = rng.random(active.size) < p[active]
        who.append(active)
        when.append(t)
        number.append(np.full(active.size, k, dtype=np.int32))
        last.append(drop)
        dropped[buyers[active[drop]]] = True
        active, t = active[~drop], t[~drop]
        t = t + rng.exponential(1.0, active.size) / rate[active]
        inside = t < days
        active, t = active[inside], t[inside]
        k += 1
    person = buyers[np.concatenate(who)].astype(np.int64)
    day = np.minimum(np.concatenate(when).astype(np.int64), days - 1)
    is_first = np.concatenate(number) == 0
    protected = is_first | np.concatenate(last)
    day, email_driven = _snap_to_campaigns(rng, people, person, day, protected)
    in_store = ~people.is_guest[person] & (
        rng.random(person.size) < _profile_array("store_share")[people.type_code[person]]
    )
    order = np.lexsort((person, day))
    purchases = _Purchases(person[order], day[order], in_store[order], protected[order], email_driven[order])
    return purchases, dropped


def _snap_to_campaigns(
    rng: np.random.Generator, people: _People, person: np.ndarray, day: np.ndarray, protected: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Move half of the discount hunters' repeat purchases to just after the previous campaign.

    Only middle purchases move and only backwards, so first and last purchase days (the truth's
    first_purchase_date and churn_date) stay as simulated.
    """
    campaigns = _campaign_days(int(day.max()) + 1 if day.size else 0)
    hunter = people.type_code[person] == BEHAVIOUR_TYPES.index("discount_hunter")
    first_day = np.full(people.n, np.iinfo(np.int64).max)
    np.minimum.at(first_day, person, day)
    pos = np.searchsorted(campaigns, day, side="right") - 1
    prev = np.where(pos >= 0, campaigns[np.maximum(pos, 0)] if campaigns.size else 0, -1)
    snap = hunter & ~protected & (pos >= 0) & (prev >= first_day[person]) & (rng.random(day.size) < 0.5)
    new_day = np.where(snap, prev + np.minimum(rng.integers(0, 3, day.size), day - prev), day)
    return new_day, snap


# ================================================================================================
# Shared pieces of a purchase row
# ================================================================================================
@dataclass(frozen=True)
class _Basket:
    gross_eur: np.ndarray
    discount_eur: np.ndarray
    items: np.ndarray
    category: np.ndarray


def _baskets(
    rng: np.random.Generator, people: _People, person: np.ndarray, email_driven: np.ndarray
) -> _Basket:
    """Order value (gamma around the person's scale), discount, item count and category."""
    types = people.type_code[person]
    shape = _profile_array("spend_shape")[types]
    gross = rng.gamma(shape, people.spend_scale[person] / shape) + 2.0
    discounted = rng.random(person.size) < np.where(
        email_driven, 0.95, _profile_array("discount_share")[types]
    )
    lo = np.array([p.discount_depth[0] for p in PROFILES])[types]
    hi = np.array([p.discount_depth[1] for p in PROFILES])[types]
    depth = np.where(discounted, lo + rng.random(person.size) * (hi - lo), 0.0)
    items = 1 + rng.poisson(_profile_array("item_mean")[types])
    other = rng.random(person.size) < _profile_array("category_breadth")[types]
    category = np.where(
        other, rng.integers(0, len(CATEGORIES), person.size), people.favourite_category[person]
    )
    return _Basket(gross, gross * depth, items, category)


def _to_cents(eur: np.ndarray, currency: np.ndarray) -> np.ndarray:
    return np.round(eur * _EUR_TO[currency] * 100).astype(np.int64)


def _landing_delay(rng: np.random.Generator, day: np.ndarray, days: int) -> np.ndarray:
    """Landing day: the event day, or 1-2 days later for ~2% (never past the last file)."""
    late = rng.random(day.size) < LATE_SHARE
    return np.minimum(day + np.where(late, rng.integers(1, 3, day.size), 0), np.maximum(day, days - 1))


# ================================================================================================
# Writing partitioned files
# ================================================================================================
def _day_bounds(landing_day: np.ndarray, days: int) -> np.ndarray:
    return np.searchsorted(landing_day, np.arange(days + 1), side="left")


def _chunks(bounds: np.ndarray, days: int) -> list[tuple[int, int]]:
    """Runs of whole days of at most _CHUNK_ROWS rows (a bigger single day is its own chunk)."""
    out, d = [], 0
    while d < days:
        e = d + 1
        while e < days and bounds[e + 1] - bounds[d] <= _CHUNK_ROWS:
            e += 1
        out.append((d, e))
        d = e
    return out


def _file(root: Path, source: str, clock: _Clock, day: int) -> Path:
    folder, ext = SOURCE_FILES[source]
    return root / folder / f"{clock.day_string(day)}.{ext}"


def _prepare_dir(root: Path, source: str) -> None:
    """Create the source folder and drop date files of earlier runs (stale days must not linger)."""
    folder, ext = SOURCE_FILES[source]
    path = root / folder
    path.mkdir(parents=True, exist_ok=True)
    for old in sorted(path.glob(f"????-??-??.{ext}")):
        old.unlink()


def _write_text(
    root: Path,
    source: str,
    clock: _Clock,
    landing_day: np.ndarray,
    render: Callable[[int, int], pa.Array],
    header: bytes = b"",
) -> None:
    """Write one file per day from rows sorted by landing day; `render(lo, hi)` gives their lines.

    Lines are contiguous in the arrow data buffer, so a day's bytes are one slice of it.
    """
    _prepare_dir(root, source)
    bounds = _day_bounds(landing_day, clock.days)
    for d0, d1 in _chunks(bounds, clock.days):
        lo, hi = int(bounds[d0]), int(bounds[d1])
        offsets: np.ndarray = np.zeros(1, dtype=np.int64)
        data = memoryview(b"")
        if hi > lo:
            lines = render(lo, hi)
            buffers = lines.buffers()
            offsets = np.frombuffer(buffers[1], dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
            data = memoryview(buffers[2]) if buffers[2] is not None else data
        for day in range(d0, d1):
            a, b = offsets[bounds[day] - lo], offsets[bounds[day + 1] - lo]
            with open(_file(root, source, clock, day), "wb") as fh:
                fh.write(header)
                fh.write(data[a:b])


def _write_parquet(
    root: Path,
    source: str,
    clock: _Clock,
    landing_day: np.ndarray,
    schema: pa.Schema,
    render: Callable[[int, int], pa.Table],
) -> None:
    """Like `_write_text`, for Parquet: one (possibly zero-row) file per day with a fixed schema."""
    _prepare_dir(root, source)
    bounds = _day_bounds(landing_day, clock.days)
    for d0, d1 in _chunks(bounds, clock.days):
        lo, hi = int(bounds[d0]), int(bounds[d1])
        table = render(lo, hi) if hi > lo else schema.empty_table()
        for day in range(d0, d1):
            part = table.slice(int(bounds[day]) - lo, int(bounds[day + 1] - bounds[day]))
            pq.write_table(part, _file(root, source, clock, day), compression="snappy")


@dataclass(frozen=True)
class _Written:
    """What one source writer produced: counts for the summary, identity codes for the truth."""
    rows: int
    seen: np.ndarray  # bool per key id (slot * n + person): identifiers this source emitted
    invalid: int = 0
    duplicates: int = 0
    late: int = 0
    invalid_kinds: tuple[int, ...] = ()  # rows per INVALID_KINDS entry


def _seen_keys(n: int, *uses: tuple[np.ndarray, np.ndarray | int]) -> np.ndarray:
    """Mark the key ids a source emitted, from (person, slot) pairs of its rows.

    A bitmap over the key table is O(rows) and needs no sort, unlike np.unique on tens of millions.
    """
    seen = np.zeros(_N_SLOTS * n, dtype=bool)
    for person, slot in uses:
        seen[np.asarray(slot, dtype=np.int64) * n + person] = True
    return seen


def _sort_rows(*keys: np.ndarray) -> np.ndarray:
    """Stable row order: lexsort with the first key most significant."""
    return np.lexsort(tuple(reversed(keys)))


# ================================================================================================
# shop_orders
# ================================================================================================
def _invalid_overrides(
    rng: np.random.Generator, kind: np.ndarray, total_cents: np.ndarray
) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Column -> (row mask, replacement strings) that make the invalid rows invalid.

    bad_timestamp: order_ts not ISO 8601; non_numeric_total: order_total not a number;
    negative_total: order_total < 0; missing_order_id: empty order_id; unknown_currency: 'XXX'.
    """
    codes = {name: i for i, name in enumerate(INVALID_KINDS)}
    bad_ts = ["31/02/2026 25:00", "2026-02-30T24:61:00", "not a date"]
    bad_total = ["n/a", "unknown", "--"]
    out: dict[str, tuple[np.ndarray, list[str]]] = {}
    m = kind == codes["bad_timestamp"]
    out["order_ts"] = (m, [bad_ts[i] for i in rng.integers(0, 3, int(m.sum())).tolist()])
    m1 = kind == codes["non_numeric_total"]
    m2 = kind == codes["negative_total"]
    texts = np.empty(kind.size, dtype=object)
    texts[m1] = [bad_total[i] for i in rng.integers(0, 3, int(m1.sum())).tolist()]
    texts[m2] = [f"-{c // 100}.{c % 100:02d}" for c in total_cents[m2].tolist()]
    out["order_total"] = (m1 | m2, texts[m1 | m2].tolist())
    m = kind == codes["missing_order_id"]
    out["order_id"] = (m, [""] * int(m.sum()))
    m = kind == codes["unknown_currency"]
    out["currency"] = (m, ["XXX"] * int(m.sum()))
    return out


def _shop_orders(
    rng: np.random.Generator,
    promos: np.random.Generator,
    people: _People,
    keys: pa.Array,
    purchases: _Purchases,
    clock: _Clock,
    root: Path,
    invalid_share: float,
) -> _Written:
    """Online orders: logged-in or not, dirty emails and phones, refunds, dups, late and invalid rows.

    The promotion code comes from its own stream (`promos`), so adding it left the other columns as they were.
    """
    sel = ~purchases.in_store
    person, day, protected = purchases.person[sel], purchases.day[sel], purchases.protected[sel]
    n = person.size
    types = people.type_code[person]
    tz = people.tz[person]
    utc = _place_in_day(clock, day, _local_seconds_of_day(rng, n, _SHOP_HOURS), tz)
    basket = _baskets(rng, people, person, purchases.email_driven[sel])
    currency = _COUNTRY_CURRENCY[people.country[person]]
    gross = _to_cents(basket.gross_eur, currency)
    discount = _to_cents(basket.discount_eur, currency)
    app = rng.random(n) < _profile_array("app_share")[types]
    u = rng.random(n)
    refund = _profile_array("refund_rate")[types]
    status = np.where(protected, 0, np.where(u < refund, 1, np.where(u < refund + 0.02, 2, 0)))
    logged_in = ~people.is_guest[person] & (rng.random(n) < np.where(app, 0.85, 0.5))
    email_variant = rng.choice(_N_EMAIL_VARIANTS, size=n, p=[0.55, 0.2, 0.1, 0.05, 0.1])
    phone_shown = rng.random(n) < 0.35
    phone_slot = people.phone_slot(person, utc) + rng.integers(0, _N_PHONE_VARIANTS, n)
    landing = _landing_delay(rng, day, clock.days)

    # Order ids follow order time; then exact duplicates and invalid extra rows are appended.
    chrono = _sort_rows(utc, person)
    order_no = np.empty(n, dtype=np.int64)
    order_no[chrono] = np.arange(1, n + 1)
    dup_src = np.flatnonzero(rng.random(n) < DUPLICATE_SHARE)
    n_invalid = round(invalid_share * n)
    inv_src = np.sort(rng.choice(n, size=min(n_invalid, n), replace=False)) if n else np.zeros(0, np.int64)
    inv_kind = rng.integers(0, len(INVALID_KINDS), inv_src.size)
    src = np.concatenate([np.arange(n), dup_src, inv_src])
    kind = np.concatenate([np.full(n + dup_src.size, -1), inv_kind])
    number = np.concatenate([order_no, order_no[dup_src], n + 1 + np.arange(inv_src.size)])
    row_landing = landing[src]
    order = _sort_rows(row_landing, utc[src], np.arange(src.size))
    src, kind, number, row_landing = src[order], kind[order], number[order], row_landing[order]

    valid = kind < 0
    ids = _seen_keys(
        people.n,
        (person[src][valid], _SLOT_EMAIL + email_variant[src][valid]),
        (person[src][valid & logged_in[src]], _SLOT_CRM),
        (person[src][valid & phone_shown[src]], phone_slot[src][valid & phone_shown[src]]),
    )
    currency_cases = [c for cur in CURRENCIES for c in (cur, cur.lower(), cur.title())]
    currency_case = rng.choice(3, size=n, p=[0.8, 0.15, 0.05])
    category_case = rng.choice(3, size=n, p=_CATEGORY_CASE_WEIGHTS)
    overrides = _invalid_overrides(rng, kind, gross[src] - discount[src])
    promo = _promo_codes(promos, discount > 0)

    def render(lo: int, hi: int) -> pa.Array:
        s, k = src[lo:hi], slice(lo, hi)
        local = utc[s] + _exact_offset(clock, utc[s], tz[s])
        columns = {
            "order_id": _join("SO-", _int_str(number[k], 9)),
            "order_ts": _join(_clock_strings(clock, local), _offset_strings(local - utc[s])),
            "customer_ref": _maybe(_keys(keys, people.n, _SLOT_CRM, person[s]), logged_in[s]),
            "customer_email": _keys(keys, people.n, _SLOT_EMAIL + email_variant[s], person[s]),
            "customer_phone": _maybe(_keys(keys, people.n, phone_slot[s], person[s]), phone_shown[s]),
            "currency": _lookup(currency_cases, currency[s] * 3 + currency_case[s]),
            "order_total": _money_strings(gross[s] - discount[s]),
            "discount_amount": _money_strings(discount[s]),
            "item_count": _int_str(basket.items[s]),
            "category": _lookup(_CATEGORY_CASES, basket.category[s] * 3 + category_case[s]),
            "order_status": _lookup(("completed", "refunded", "cancelled"), status[s]),
            "device": _lookup(("web", "app"), app[s].astype(np.int64)),
            "promo_code": pc.take(promo, pa.array(s)),
        }
        for column, (mask, texts) in overrides.items():
            part = mask[k]
            if part.any():
                first = int(mask[:lo].sum())
                replacement = pa.array(texts[first : first + int(part.sum())], _L)
                columns[column] = pc.replace_with_mask(columns[column], pa.array(part), replacement)
        return _csv_lines([columns[c] for c in SOURCE_COLUMNS["shop_orders"]])

    header = (",".join(SOURCE_COLUMNS["shop_orders"]) + "\n").encode()
    _write_text(root, "shop_orders", clock, row_landing, render, header)
    return _Written(
        rows=int(src.size),
        seen=ids,
        invalid=int(inv_src.size),
        duplicates=int(dup_src.size),
        late=int((row_landing > day[src]).sum()),
        invalid_kinds=tuple(int((kind == i).sum()) for i in range(len(INVALID_KINDS))),
    )


def _promo_codes(rng: np.random.Generator, discounted: np.ndarray) -> pa.Array:
    """Code redeemed per order: one of PROMO_CODES on ~70% of the discounted orders, as the shop
    stored it (mostly as issued; a few in lower or title case or with a stray space); null otherwise."""
    n = discounted.size
    with_code = discounted & (rng.random(n) < _PROMO_SHARE)
    code = rng.choice(len(PROMO_CODES), size=n, p=_PROMO_CODE_WEIGHTS)
    variant = rng.choice(len(_PROMO_VARIANT_WEIGHTS), size=n, p=_PROMO_VARIANT_WEIGHTS)
    issued = pa.array(list(PROMO_CODES), _L)
    title = pc.utf8_capitalize(issued)
    variants = pa.concat_arrays([issued, pc.utf8_lower(issued), title, _join(" ", issued), _join(issued, " ")])
    return _maybe(pc.take(variants, pa.array(variant * len(PROMO_CODES) + code)), with_code)


# ================================================================================================
# Demo campaigns: potential responses for everyone, the treated people's appended to shop_orders
# ================================================================================================
@dataclass(frozen=True)
class _Responses:
    """Every potential response to a DEMO_CAMPAIGNS campaign, ordered by campaign, then person."""
    campaign: np.ndarray  # index into DEMO_CAMPAIGNS
    person: np.ndarray
    day: np.ndarray  # UTC day index of the order: in (start_date, start_date + window]
    utc: np.ndarray  # order time, seconds since the window start
    cents: np.ndarray  # order total in EUR cents
    realised: np.ndarray  # the person is treated: the order is in the landing files


def crm_customer_id(hash_key: str, crm_id: str) -> str:
    """The pipeline's customer_id of a CRM customer: the keyed hash of the trimmed CRM id (namespace
    customer:crm, as custseg/steps/identity.py mints it)."""
    return keyed_hash(hash_key, "customer:crm", crm_id.strip())


def _last_purchase_day(purchases: _Purchases, n: int, upto_day: int) -> np.ndarray:
    """Each person's last purchase day on or before `upto_day` (-1: none)."""
    last = np.full(n, -1, dtype=np.int64)
    before = purchases.day <= upto_day
    np.maximum.at(last, purchases.person[before], purchases.day[before])
    return last


def _campaign_responses(
    rng: np.random.Generator, people: _People, keys: pa.Array, clock: _Clock, hash_key: str,
    last_purchase_by_day: Mapping[int, np.ndarray],
) -> _Responses:
    """Draw each non-guest person's potential response to each campaign, and who is treated.

    `last_purchase_by_day` holds, for each campaign's first night (a day index), each person's last purchase
    day on or before it (`_last_purchase_day`; the campaigns share their first night, so it is one scan).

    Only people who had bought before the campaign's first night can respond, and only those the campaign is
    meant for (`DemoCampaign.lapsed_days`): the campaigns target RFM segments, which need a purchase, and a
    response planted on someone not yet a customer would make the treated ones customers, and so let them into
    the targets on later nights more often than their controls. Planting on everyone would also make most of
    the base buy on the last two days and bury each campaign's effect under the others' orders.

    The draws are made for every person (guests included, then dropped) and every campaign, in
    DEMO_CAMPAIGNS order, so one campaign's responses do not depend on another's or on the holdout:
    the treated and the control people's potential responses come from the same distribution, which is
    what makes the control group a valid counterfactual. A campaign whose response days would begin
    before the data (fewer days than `starts_days_before_end`) plants nothing.
    """
    n = people.n
    parts: list[tuple[np.ndarray, ...]] = []
    for k, campaign in enumerate(DEMO_CAMPAIGNS):
        if campaign.conversion_window_days > campaign.starts_days_before_end:
            raise ValueError(f"{campaign.campaign_id}: its responses would fall after the data's last day")
        draw = rng.random(n)
        offset = rng.integers(1, campaign.conversion_window_days + 1, n)
        # the log-mean for which the lognormal's mean is mean_response_eur
        mu = np.log(campaign.mean_response_eur) - _RESPONSE_LOG_SIGMA**2 / 2
        euros = rng.lognormal(mu, _RESPONSE_LOG_SIGMA, n)
        local_sod = _local_seconds_of_day(rng, n, _SHOP_HOURS)
        start_day = clock.days - 1 - campaign.starts_days_before_end
        inside = start_day + 1 >= 0  # the first response day is in the data
        last = last_purchase_by_day[start_day]
        lapsed = start_day - last
        meant_for = (last >= 0) & (lapsed >= campaign.lapsed_days[0]) & (lapsed <= campaign.lapsed_days[1])
        person = np.flatnonzero(~people.is_guest & meant_for & (draw < campaign.response_probability) & inside)
        day = start_day + offset[person]
        parts.append((
            np.full(person.size, k, dtype=np.int64),
            person,
            day,
            _place_in_day(clock, day, local_sod[person], people.tz[person]),
            np.maximum(np.round(euros[person] * 100).astype(np.int64), _RESPONSE_MIN_CENTS),
        ))
    campaign_idx, person, day, utc, cents = (np.concatenate(columns) for columns in zip(*parts, strict=True))
    return _Responses(campaign_idx, person, day, utc, cents, _treated(hash_key, campaign_idx, person, keys, n))


def _treated(hash_key: str, campaign: np.ndarray, person: np.ndarray, keys: pa.Array, n: int) -> np.ndarray:
    """Not held out: the pipeline's holdout rule (custseg.campaigns.is_control) on the customer_id the
    pipeline gives the person (a keyed hash per row: the rule is a hash, there is nothing to vectorise)."""
    crm_ids = _keys(keys, n, _SLOT_CRM, person).to_pylist()
    customer = {p: crm_customer_id(hash_key, c) for p, c in zip(person.tolist(), crm_ids, strict=True)}
    return np.array(
        [not is_control(hash_key, DEMO_CAMPAIGNS[k].campaign_id, customer[p], DEMO_CAMPAIGNS[k].control_share)
         for k, p in zip(campaign.tolist(), person.tolist(), strict=True)],
        dtype=bool,
    )  # fmt: skip


def _response_order_ids(campaign: np.ndarray, person: np.ndarray) -> pa.Array:
    """'SO-C<campaign>-<person_id>', e.g. SO-C01-000000042: one order per campaign and person at most, and
    never equal to a normal order id ('SO-' and nine digits), so the planted orders can be told apart."""
    return _join("SO-C", _int_str(campaign + 1, 2), "-", _int_str(person + 1, 9))


def _response_lines(responses: _Responses, rows: np.ndarray, people: _People, keys: pa.Array,
                    clock: _Clock) -> pa.Array:
    """shop_orders lines of response orders, clean so they reach the pipeline exactly: logged in (the CRM id
    attributes them), EUR, no discount or code, completed, in the shopper's local time like other orders."""
    person, utc = responses.person[rows], responses.utc[rows]
    m = rows.size
    tz = people.tz[person]
    local = utc + _exact_offset(clock, utc, tz)
    columns = {
        "order_id": _response_order_ids(responses.campaign[rows], person),
        "order_ts": _join(_clock_strings(clock, local), _offset_strings(local - utc)),
        "customer_ref": _keys(keys, people.n, _SLOT_CRM, person),
        "customer_email": _keys(keys, people.n, _SLOT_EMAIL, person),
        "customer_phone": pa.nulls(m, _L),
        "currency": _lookup(("EUR",), np.zeros(m)),
        "order_total": _money_strings(responses.cents[rows]),
        "discount_amount": _money_strings(np.zeros(m, dtype=np.int64)),
        "item_count": _int_str(np.ones(m)),
        "category": _lookup(CATEGORIES, people.favourite_category[person]),
        "order_status": _lookup(("completed",), np.zeros(m)),
        "device": _lookup(("web",), np.zeros(m)),
        "promo_code": pa.nulls(m, _L),
    }
    return _csv_lines([columns[c] for c in SOURCE_COLUMNS["shop_orders"]])


def _append_shop_responses(
    root: Path, responses: _Responses, people: _People, keys: pa.Array, clock: _Clock
) -> _Written:
    """Append the treated people's response orders to the shop_orders file of their day.

    Appending after a file's last line leaves every byte before it as `_shop_orders` wrote it, so the
    planted orders change no other row; they land on their own day, once, and are never late or invalid.
    """
    rows = np.flatnonzero(responses.realised)
    rows = rows[_sort_rows(responses.day[rows], responses.utc[rows], responses.campaign[rows], responses.person[rows])]
    lines = _response_lines(responses, rows, people, keys, clock).to_pylist()
    bounds = _day_bounds(responses.day[rows], clock.days)
    for day in np.unique(responses.day[rows]).tolist():
        path = _file(root, "shop_orders", clock, day)
        if not path.is_file():  # _shop_orders writes a file (at least its header) for every day
            raise RuntimeError(f"{path} is missing: shop_orders must be written before the responses")
        with open(path, "ab") as fh:
            fh.write("".join(lines[bounds[day] : bounds[day + 1]]).encode())
    person = responses.person[rows]
    return _Written(rows=int(rows.size), seen=_seen_keys(people.n, (person, _SLOT_CRM), (person, _SLOT_EMAIL)))


def _write_campaign_truth(out: Path, responses: _Responses, people: _People, keys: pa.Array, clock: _Clock) -> None:
    """campaign_responses.parquet: every potential response, realised (treated) or not (control)."""
    out.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "campaign_id": _lookup([c.campaign_id for c in DEMO_CAMPAIGNS], responses.campaign).cast(pa.string()),
            "crm_customer_id": _keys(keys, people.n, _SLOT_CRM, responses.person).cast(pa.string()),
            "response_date": _dates_or_null(np.datetime64(clock.start, "D"), responses.day),
            "amount_eur": pa.array(responses.cents / 100.0),
            "order_id": _response_order_ids(responses.campaign, responses.person).cast(pa.string()),
            "is_realised": pa.array(responses.realised, type=pa.bool_()),
        }
    )
    pq.write_table(table, out / "campaign_responses.parquet", compression="snappy")


class _PlainDumper(yaml.SafeDumper):
    """Safe YAML without anchors: the campaigns share their end date object, each entry shows it in full."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _write_campaigns_file(out: Path, end_date: date) -> None:
    """<out>/campaigns.yml: DEMO_CAMPAIGNS in the format of config/campaigns.yml (custseg.campaigns)."""
    entries = []
    for c in DEMO_CAMPAIGNS:
        start, end = c.dates(end_date)
        entries.append({
            "campaign_id": c.campaign_id,
            "description": c.description,
            "target_rfm_segments": list(c.target_rfm_segments),
            "start_date": start,
            "end_date": end,
            "conversion_window_days": c.conversion_window_days,
            "control_share": c.control_share,
        })  # fmt: skip
    header = (
        "# The demo's campaigns (custseg/demo/generate.py DEMO_CAMPAIGNS), each with a known true effect:\n"
        "# the treated customers' planted response orders are in the shop orders (order ids SO-C...), and\n"
        "# ground_truth/campaign_responses.parquet holds every potential response, control customers' too.\n"
        "# Point CUSTSEG_CAMPAIGNS_FILE here to run them.\n"
    )
    body = yaml.dump({"campaigns": entries}, Dumper=_PlainDumper, sort_keys=False, width=1000,
                     default_flow_style=None)
    out.mkdir(parents=True, exist_ok=True)
    (out / "campaigns.yml").write_text(header + body, encoding="utf-8")


# ================================================================================================
# pos_sales
# ================================================================================================
POS_SCHEMA = pa.schema(
    [
        ("receipt_id", pa.string()),
        ("store_id", pa.string()),
        ("sold_at_local", pa.string()),
        ("store_tz", pa.string()),
        ("loyalty_card", pa.string()),
        ("currency", pa.string()),
        ("amount", pa.float64()),
        ("discount_amount", pa.float64()),
        ("category", pa.string()),
        ("is_return", pa.bool_()),
    ]
)


def _pos_sales(
    rng: np.random.Generator,
    people: _People,
    keys: pa.Array,
    purchases: _Purchases,
    clock: _Clock,
    root: Path,
) -> _Written:
    """Store receipts: local wall-clock times, loyalty card when presented, returns as negative rows."""
    sel = purchases.in_store
    person, day = purchases.person[sel], purchases.day[sel]
    n = person.size
    types = people.type_code[person]
    region_of = _COUNTRY_REGION[people.country[person]]
    away = np.zeros(n, dtype=np.int64)
    for r, stores in enumerate(_REGION_STORES):
        away[region_of == r] = rng.choice(stores, size=int((region_of == r).sum()))
    store = np.where(rng.random(n) < 0.85, people.home_store[person], away)
    utc = _place_in_day(clock, day, _local_seconds_of_day(rng, n, _POS_HOURS), _STORE_TZ[store])
    basket = _baskets(rng, people, person, purchases.email_driven[sel])
    currency = _STORE_CURRENCY[store]
    gross = _to_cents(basket.gross_eur, currency)
    discount = _to_cents(basket.discount_eur, currency)
    card_shown = people.has_card[person] & (rng.random(n) < 0.93)

    # Returns: a later receipt in the same store, refunding the paid amount.
    ret = np.flatnonzero(rng.random(n) < _profile_array("refund_rate")[types])
    ret_day = day[ret] + rng.integers(1, 21, ret.size)
    ret = ret[ret_day < clock.days]
    ret_day = ret_day[ret_day < clock.days]
    ret_utc = _place_in_day(
        clock, ret_day, _local_seconds_of_day(rng, ret.size, _POS_HOURS), _STORE_TZ[store[ret]]
    )

    src = np.concatenate([np.arange(n), ret])
    is_return = np.concatenate([np.zeros(n, bool), np.ones(ret.size, bool)])
    row_utc = np.concatenate([utc, ret_utc])
    row_day = np.concatenate([day, ret_day])
    paid = np.where(is_return, -(gross - discount)[src], (gross - discount)[src])
    row_discount = np.where(is_return, 0, discount[src])
    card_variant = rng.integers(0, _N_CARD_VARIANTS, src.size)
    landing = _landing_delay(rng, row_day, clock.days)
    receipt_no = np.empty(src.size, dtype=np.int64)
    receipt_no[_sort_rows(row_utc, src)] = np.arange(1, src.size + 1)
    order = _sort_rows(landing, row_utc, np.arange(src.size))
    src, is_return, row_utc, row_day, paid, row_discount, card_variant, landing, receipt_no = (
        a[order]
        for a in (src, is_return, row_utc, row_day, paid, row_discount, card_variant, landing, receipt_no)
    )
    shown = card_shown[src]
    ids = _seen_keys(people.n, (person[src][shown], _SLOT_CARD + card_variant[shown]))
    store_ids = [s[0] for s in STORES]

    def render(lo: int, hi: int) -> pa.Table:
        s, k = src[lo:hi], slice(lo, hi)
        st = store[s]
        local = row_utc[k] + _exact_offset(clock, row_utc[k], _STORE_TZ[st])
        columns = [
            _join("RC-", _int_str(receipt_no[k], 10)),
            _lookup(store_ids, st),
            _clock_strings(clock, local, sep=" "),
            _lookup(TIME_ZONES, _STORE_TZ[st]),
            _maybe(_keys(keys, people.n, _SLOT_CARD + card_variant[k], person[s]), shown[k]),
            _lookup(CURRENCIES, currency[s]),
            pa.array(paid[k] / 100.0),
            pa.array(row_discount[k] / 100.0),
            _lookup(CATEGORIES, basket.category[s]),
            pa.array(is_return[k]),
        ]
        return pa.Table.from_arrays(
            [c.cast(f.type) for c, f in zip(columns, POS_SCHEMA, strict=True)], schema=POS_SCHEMA
        )

    _write_parquet(root, "pos_sales", clock, landing, POS_SCHEMA, render)
    return _Written(rows=int(src.size), seen=ids, late=int((landing > row_day).sum()))


# ================================================================================================
# web_sessions
# ================================================================================================
def _web_sessions(
    rng: np.random.Generator,
    interests: np.random.Generator,
    people: _People,
    keys: pa.Array,
    churn_day: np.ndarray,
    clock: _Clock,
    root: Path,
) -> _Written:
    """Sessions at a type-dependent rate while active, fading after churn, plus anonymous visitors.

    The session's category comes from its own stream (`interests`), drawn in file order after every
    other column, so adding it left the other columns' values as they were.
    """
    days = clock.days
    known = np.flatnonzero(~people.is_guest)
    types = people.type_code[known]
    rate = _profile_array("web_per_month")[types] / 30.0 * people.web_engagement[known]
    start = np.maximum(people.acquired_at[known], 0.0)
    churn = churn_day[known].astype(np.float64) + 0.5
    churned = churn_day[known] >= 0
    end = np.where(churned, churn, float(days))
    count = rng.poisson(rate * np.maximum(end - start, 0.0))
    fade_days = 20.0
    fade_count = np.where(churned, rng.poisson(rate * fade_days), 0)
    who = np.repeat(np.arange(known.size), count)
    t_active = start[who] + rng.random(who.size) * (end - start)[who]
    who_fade = np.repeat(np.arange(known.size), fade_count)
    t_fade = churn[who_fade] + rng.exponential(fade_days, who_fade.size)
    who = np.concatenate([who, who_fade])
    t = np.concatenate([t_active, t_fade])
    inside = t < days
    person = known[who[inside]]
    day = t[inside].astype(np.int64)
    n_anon = round(ANONYMOUS_SESSION_SHARE * person.size)
    anon_day = rng.integers(0, days, n_anon)
    anon_tz = rng.choice(len(TIME_ZONES), size=n_anon, p=[0.55, 0.27, 0.12, 0.06])
    tz = np.concatenate([people.tz[person], anon_tz])
    day = np.concatenate([day, anon_day])
    person = np.concatenate([person, np.full(n_anon, -1)])
    n = person.size
    p_safe = np.maximum(person, 0)
    is_person = person >= 0
    types = np.where(is_person, people.type_code[p_safe], _PROSPECT_CODE)
    utc = _place_in_day(clock, day, _local_seconds_of_day(rng, n, _SHOP_HOURS), tz)
    logged_in = is_person & (rng.random(n) < _profile_array("web_login")[types])
    via_link = is_person & ~logged_in & (rng.random(n) < np.where(people.opt_in[p_safe], 0.3, 0.08))
    email_variant = np.where(rng.random(n) < 0.8, 0, 1)
    app = rng.random(n) < np.where(logged_in, 0.2, 0.0) + _profile_array("app_share")[types]
    pages = 1 + rng.poisson(np.where(is_person, 2.0 + 4.0 * _profile_array("cart_rate")[types], 1.5))
    cart = rng.random(n) < np.where(is_person, _profile_array("cart_rate")[types], 0.05)
    ms = utc * 1000 + rng.integers(0, 1000, n)
    session_no = np.empty(n, dtype=np.int64)
    session_no[_sort_rows(ms, np.arange(n))] = np.arange(1, n + 1)
    order = _sort_rows(day, ms, np.arange(n))
    person, logged_in, via_link, email_variant, app, pages, cart, ms, session_no, day = (
        a[order] for a in (person, logged_in, via_link, email_variant, app, pages, cart, ms, session_no, day)
    )
    p_safe = np.maximum(person, 0)
    with_email = logged_in | via_link
    category, category_shown = _session_categories(interests, people, person)
    category_case = interests.choice(3, size=n, p=_CATEGORY_CASE_WEIGHTS)
    ids = _seen_keys(
        people.n,
        (person[logged_in], _SLOT_CRM),
        (person[with_email], _SLOT_EMAIL + email_variant[with_email]),
    )
    epoch_ms = int(pd.Timestamp(clock.start, tz="UTC").value // 1_000_000)

    def render(lo: int, hi: int) -> pa.Array:
        k = slice(lo, hi)
        return _json_lines(
            [
                ("session_id", _join("WS-", _int_str(session_no[k], 10)), True),
                ("started_at_ms", _int_str(ms[k] + epoch_ms), False),
                ("crm_customer_id", _maybe(_keys(keys, people.n, _SLOT_CRM, p_safe[k]), logged_in[k]), True),
                ("user_email", _maybe(_keys(keys, people.n, _SLOT_EMAIL + email_variant[k], p_safe[k]),
                                      with_email[k]), True),
                ("platform", _lookup(("web", "app"), app[k]), True),
                ("page_views", _int_str(pages[k]), False),
                ("added_to_cart", _lookup(("false", "true"), cart[k]), False),
                ("category", _maybe(_lookup(_CATEGORY_CASES, category[k] * 3 + category_case[k]),
                                    category_shown[k]), True),
            ]
        )  # fmt: skip

    _write_text(root, "web_sessions", clock, day, render)
    return _Written(rows=n, seen=ids)


_WEB_FAVOURITE_SHARE = 0.6  # sessions of a known person mostly in their favourite category
_WEB_NO_CATEGORY_SHARE = 0.10  # home page, account pages: no category


def _session_categories(
    rng: np.random.Generator, people: _People, person: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Category most pages of each session were in: the person's favourite with probability 0.6, else
    one of the others (uniform); uniform for anonymous visitors (person -1); absent for ~10%."""
    n, k = person.size, len(CATEGORIES)
    favourite = people.favourite_category[np.maximum(person, 0)].astype(np.int64)
    own = rng.random(n) < _WEB_FAVOURITE_SHARE
    other = (favourite + rng.integers(1, k, n)) % k
    anonymous = rng.integers(0, k, n)
    shown = rng.random(n) >= _WEB_NO_CATEGORY_SHARE
    category = np.where(person >= 0, np.where(own, favourite, other), anonymous)
    return category, shown


# ================================================================================================
# email_events
# ================================================================================================
def _email_events(
    rng: np.random.Generator,
    people: _People,
    keys: pa.Array,
    churn_day: np.ndarray,
    clock: _Clock,
    root: Path,
) -> _Written:
    """A campaign every two weeks to opted-in CRM customers; opens fade after churn; unsubscribes stick.

    Loops over campaigns (tens), vectorised over recipients.
    """
    recipients = np.flatnonzero(people.opt_in)
    subscribed = np.ones(recipients.size, dtype=bool)
    open_p = _profile_array("email_open")
    click_p = _profile_array("email_click")
    who_parts, sec_parts, type_parts, campaign_parts = [], [], [], []
    for number, cday in enumerate(_campaign_days(clock.days).tolist(), start=1):
        send_at = cday * SECONDS_PER_DAY + 9 * 3600
        eligible = np.flatnonzero(subscribed & (people.signup_sec[recipients] <= send_at))
        who = recipients[eligible]
        m = who.size
        send = send_at + rng.integers(0, 7200, m)
        since_churn = np.where(churn_day[who] >= 0, cday - churn_day[who], -1)
        fade = np.where(since_churn > 0, np.exp(-np.maximum(since_churn, 0) / 45.0), 1.0)
        opened = (
            rng.random(m)
            < np.minimum(open_p[people.type_code[who]] * people.email_engagement[who], 0.95) * fade
        )
        open_at = send + rng.exponential(6 * 3600, m).astype(np.int64)
        clicked = opened & (rng.random(m) < click_p[people.type_code[who]])
        click_at = open_at + rng.integers(5, 1800, m)
        unsub_rate = np.where(people.type_code[who] == BEHAVIOUR_TYPES.index("one_off"), 0.03, 0.01)
        unsub = opened & (rng.random(m) < unsub_rate)
        unsub_at = open_at + rng.integers(30, 900, m)
        subscribed[eligible[unsub]] = False
        for event, mask, at in (
            (0, None, send),
            (1, opened, open_at),
            (2, clicked, click_at),
            (3, unsub, unsub_at),
        ):
            pick = slice(None) if mask is None else mask
            who_parts.append(who[pick])
            sec_parts.append(at[pick])
            type_parts.append(np.full(who[pick].size, event, dtype=np.int8))
            campaign_parts.append(np.full(who[pick].size, number, dtype=np.int32))
    if who_parts:
        person, sec = np.concatenate(who_parts), np.concatenate(sec_parts)
        event, campaign = np.concatenate(type_parts), np.concatenate(campaign_parts)
    else:
        person = sec = np.zeros(0, dtype=np.int64)
        event, campaign = np.zeros(0, dtype=np.int8), np.zeros(0, dtype=np.int32)
    inside = sec < clock.n_seconds
    person, sec, event, campaign = person[inside], sec[inside], event[inside], campaign[inside]
    order = _sort_rows(sec, person, event)
    person, sec, event, campaign = person[order], sec[order], event[order], campaign[order]
    day = sec // SECONDS_PER_DAY
    slot = _SLOT_EMAIL + people.esp_email_variant[person]
    ids = _seen_keys(people.n, (person, slot))

    def render(lo: int, hi: int) -> pa.Array:
        k = slice(lo, hi)
        return _csv_lines(
            [
                _join("EE-", _int_str(np.arange(lo + 1, hi + 1), 10)),
                _join("CMP-", _int_str(campaign[k], 4)),
                _keys(keys, people.n, slot[k], person[k]),
                _lookup(("send", "open", "click", "unsubscribe"), event[k]),
                _join(_clock_strings(clock, sec[k]), "Z"),
            ]
        )

    header = (",".join(SOURCE_COLUMNS["email_events"]) + "\n").encode()
    _write_text(root, "email_events", clock, day, render, header)
    return _Written(rows=int(person.size), seen=ids)


# ================================================================================================
# support_tickets
# ================================================================================================
def _support_tickets(
    rng: np.random.Generator,
    subjects: np.random.Generator,
    people: _People,
    keys: pa.Array,
    first_day: np.ndarray,
    churn_day: np.ndarray,
    clock: _Clock,
    root: Path,
) -> _Written:
    """Tickets while a buyer is active (and shortly after churn), NPS answered about half the time.

    Tickets of the window's last 3 days are still open, older ones are solved (95%). The subject line
    comes from its own stream (`subjects`), drawn in file order after every other column.
    """
    buyers = np.flatnonzero(first_day >= 0)
    types = people.type_code[buyers]
    count = rng.poisson(_profile_array("support_rate")[types])
    start = first_day[buyers].astype(np.float64)
    end = np.where(churn_day[buyers] >= 0, churn_day[buyers] + 14.0, float(clock.days))
    end = np.minimum(end, float(clock.days))
    who = np.repeat(np.arange(buyers.size), count)
    t = start[who] + rng.random(who.size) * (end - start)[who]
    person = buyers[who]
    day = t.astype(np.int64)
    n = person.size
    tz = people.tz[person]
    utc = _place_in_day(clock, day, _local_seconds_of_day(rng, n, _SUPPORT_HOURS), tz)
    order = _sort_rows(day, utc, person)  # file order; the attributes below are drawn in this order
    person, day, tz, utc = person[order], day[order], tz[order], utc[order]
    channel = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])  # email, chat, phone
    has_email = (channel < 2) | (rng.random(n) < 0.3)
    has_phone = (channel == 2) | (rng.random(n) < 0.2)
    email_slot = _SLOT_EMAIL + rng.integers(0, _N_EMAIL_VARIANTS, n)
    phone_slot = people.phone_slot(person, utc) + rng.integers(0, _N_PHONE_VARIANTS, n)
    hunter = people.type_code[person] == BEHAVIOUR_TYPES.index("discount_hunter")
    topic = np.where(
        hunter,
        rng.choice(5, size=n, p=[0.2, 0.4, 0.15, 0.15, 0.1]),
        rng.choice(5, size=n, p=[0.3, 0.2, 0.25, 0.15, 0.1]),
    )
    solved = (day < clock.days - 3) & (rng.random(n) < 0.95)
    answered = solved & (rng.random(n) < 0.5)
    unhappy = np.where(churn_day[person] >= 0, 1.5, 0.0)  # churners answer lower
    nps_mean = _profile_array("nps_mean")[people.type_code[person]] - unhappy
    nps = np.clip(np.round(rng.normal(nps_mean, 1.7)), 0, 10).astype(np.int64)
    ids = _seen_keys(
        people.n, (person[has_email], email_slot[has_email]), (person[has_phone], phone_slot[has_phone])
    )
    subject = _ticket_subjects(subjects, topic)

    def render(lo: int, hi: int) -> pa.Array:
        k = slice(lo, hi)
        local = utc[k] + _exact_offset(clock, utc[k], tz[k])
        return _json_lines(
            [
                ("ticket_id", _join("TK-", _int_str(np.arange(lo + 1, hi + 1), 8)), True),
                ("created_at", _join(_clock_strings(clock, local), _offset_strings(local - utc[k])), True),
                (
                    "customer_email",
                    _maybe(_keys(keys, people.n, email_slot[k], person[k]), has_email[k]),
                    True,
                ),
                (
                    "customer_phone",
                    _maybe(_keys(keys, people.n, phone_slot[k], person[k]), has_phone[k]),
                    True,
                ),
                ("contact_channel", _lookup(("email", "chat", "phone"), channel[k]), True),
                ("topic", _lookup(SUPPORT_TOPICS, topic[k]), True),
                ("subject", subject.slice(lo, hi - lo), True),
                ("ticket_status", _lookup(("open", "solved"), solved[k]), True),
                ("nps_score", _maybe(_int_str(nps[k]), answered[k]), False),
            ]
        )

    _write_text(root, "support_tickets", clock, day, render)
    return _Written(rows=n, seen=ids)


def _ticket_subjects(rng: np.random.Generator, topic: np.ndarray) -> pa.Array:
    """Subject line per ticket: a template of its topic (uniform), or for ~10% a generic one that names
    no topic; a few are typed in lower or upper case."""
    n = topic.size
    generic = rng.random(n) < _GENERIC_SUBJECT_SHARE
    group = np.where(generic, len(SUPPORT_SUBJECTS), topic)
    pick = np.minimum((rng.random(n) * _SUBJECT_COUNT[group]).astype(np.int64), _SUBJECT_COUNT[group] - 1)
    case = rng.choice(3, size=n, p=_SUBJECT_CASE_WEIGHTS)
    written = pa.array(list(_SUBJECT_FLAT), _L)
    cases = pa.concat_arrays([written, pc.utf8_lower(written), pc.utf8_upper(written)])
    return pc.take(cases, pa.array(case * len(_SUBJECT_FLAT) + _SUBJECT_START[group] + pick))


# ================================================================================================
# social_interactions
# ================================================================================================
@dataclass(frozen=True)
class _Social:
    """Per-person latent social-media profile (index = person_id - 1)."""
    has_account: np.ndarray
    platform: np.ndarray  # index into SOCIAL_PLATFORMS (meaningful with an account)
    level: np.ndarray  # index into SOCIAL_LEVELS, -1 without an account
    rate: np.ndarray  # interactions per day while active (0 for level none and no account)
    is_advocate: np.ndarray  # shares and mentions; only account holders above level none
    in_crm: np.ndarray  # the CRM holds the platform and the handle
    handle: pa.Array  # as the platform shows it: lower case, no "@" (every person; used with an account)
    crm_handle: pa.Array  # as entered in the CRM: "@" or not, case varies, stray spaces


def _make_social(rng: np.random.Generator, people: _People) -> _Social:
    """Who has an account on which platform, under which handle, how active, and what the CRM holds."""
    n = people.n
    idx = np.arange(n)
    has_account = rng.random(n) < np.where(people.is_guest, _SOCIAL_ACCOUNT_SHARE[1], _SOCIAL_ACCOUNT_SHARE[0])
    platform = rng.choice(len(SOCIAL_PLATFORMS), size=n, p=_SOCIAL_PLATFORM_WEIGHTS)
    level = np.where(has_account, rng.choice(len(SOCIAL_LEVELS), size=n, p=_SOCIAL_LEVEL_WEIGHTS), -1)
    rate = _SOCIAL_RATE[np.maximum(level, 0)] * rng.gamma(4.0, 1 / 4, n)
    is_advocate = (level > 0) & (rng.random(n) < _SOCIAL_ADVOCATE_SHARE)
    in_crm = has_account & ~people.is_guest & (rng.random(n) < _SOCIAL_IN_CRM_SHARE)

    # Handle: name + a number unique per person, so the handle is too (the digits end it, the name
    # part ends in a letter). x allows no ".".
    style = rng.integers(0, 4, n)
    style[(platform == SOCIAL_PLATFORMS.index("x")) & (style == 2)] = 1
    modulus = 10 ** max(4, len(str(n)))
    num = _int_str(_bijection(idx, modulus, 7901, int(rng.integers(modulus))))
    first = _lookup(FIRST_NAMES, people.first_idx)
    last = _lookup(LAST_NAMES, people.last_idx)
    styles = [
        _join(first, last, num),
        _join(first, "_", last, num),
        _join(first, ".", last, num),
        _join(pc.utf8_slice_codeunits(first, 0, 1), last, num),
    ]
    shown = pc.take(pa.concat_arrays(styles), pa.array(style * n + idx))  # e.g. Jane_Smith4821
    handle = pc.utf8_lower(shown)
    cases = pa.concat_arrays([handle, shown, pc.utf8_upper(shown)])
    typed = pc.take(cases, pa.array(rng.choice(3, size=n, p=[0.6, 0.3, 0.1]) * n + idx))
    at = rng.random(n) < 0.5
    typed = pc.if_else(pa.array(at), _join("@", typed), typed)
    space = rng.choice(4, size=n, p=[0.88, 0.05, 0.05, 0.02])  # none, leading, trailing, both
    typed = pc.if_else(pa.array((space == 1) | (space == 3)), _join(" ", typed), typed)
    typed = pc.if_else(pa.array(space >= 2), _join(typed, " "), typed)
    return _Social(has_account, platform, level, rate, is_advocate, in_crm, handle, typed)


def _stranger_handles(rng: np.random.Generator, pool: int) -> tuple[pa.Array, np.ndarray]:
    """Handles (and platforms) of people who follow the brand but are nobody's customer."""
    idx = np.arange(pool)
    a, b = _STRANGER_WORDS
    word1 = _lookup(a, idx % len(a))
    word2 = _lookup(b, idx // len(a) % len(b))
    sep = _lookup(("", "_", "."), rng.integers(0, 3, pool))
    modulus = 10 ** max(2, len(str(pool)))
    num = _int_str(_bijection(idx, modulus, 7907, int(rng.integers(modulus))))
    platform = rng.choice(len(SOCIAL_PLATFORMS), size=pool, p=_SOCIAL_PLATFORM_WEIGHTS)
    sep = pc.if_else(pa.array(platform == SOCIAL_PLATFORMS.index("x")), _s("_"), sep)
    return _join(word1, sep, word2, num), platform


def _social_interactions(
    rng: np.random.Generator,
    people: _People,
    keys: pa.Array,
    social: _Social,
    churn_day: np.ndarray,
    clock: _Clock,
    root: Path,
) -> _Written:
    """Likes, comments, shares, follows and mentions: a Poisson process per account holder at its
    level's rate from acquisition on, fading after churn; shares and mentions only by advocates; a
    person's first interaction is often a follow; plus strangers, exact duplicates and late rows."""
    days = clock.days
    active = np.flatnonzero(social.rate > 0)
    start = people.acquired_at[active]
    churned = churn_day[active] >= 0
    churn = churn_day[active].astype(np.float64) + 0.5
    end = np.where(churned, churn, float(days))
    rate = social.rate[active]
    count = rng.poisson(rate * np.maximum(end - start, 0.0))
    fade_count = np.where(churned, rng.poisson(rate * _SOCIAL_FADE_DAYS), 0)
    who = np.repeat(np.arange(active.size), count)
    t_active = start[who] + rng.random(who.size) * (end - start)[who]
    who_fade = np.repeat(np.arange(active.size), fade_count)
    t_fade = churn[who_fade] + rng.exponential(_SOCIAL_FADE_DAYS, who_fade.size)
    who = np.concatenate([who, who_fade])
    t = np.concatenate([t_active, t_fade])
    inside = t < days
    person, t = active[who[inside]], t[inside]
    by_person = _sort_rows(person, t)
    person, t = person[by_person], t[by_person]
    n_known = person.size
    first = np.r_[True, person[1:] != person[:-1]] if n_known else np.zeros(0, bool)
    kind = np.where(
        social.is_advocate[person],
        rng.choice(len(SOCIAL_INTERACTIONS), size=n_known, p=_SOCIAL_TYPES_ADVOCATE),
        rng.choice(len(SOCIAL_INTERACTIONS), size=n_known, p=_SOCIAL_TYPES_OTHER),
    )
    kind[first & (rng.random(n_known) < _SOCIAL_FOLLOW_SHARE)] = SOCIAL_INTERACTIONS.index("follow")

    # Strangers: ~10% of all interactions, a few each, any day.
    n_strange = round(n_known * _SOCIAL_STRANGER_SHARE / (1 - _SOCIAL_STRANGER_SHARE))
    pool = max(1, n_strange // 3)
    stranger_handle, stranger_platform = _stranger_handles(rng, pool)
    stranger = rng.integers(0, pool, n_strange)
    stranger_day = rng.integers(0, days, n_strange)
    stranger_tz = rng.choice(len(TIME_ZONES), size=n_strange, p=[0.55, 0.27, 0.12, 0.06])
    stranger_kind = rng.choice(len(SOCIAL_INTERACTIONS), size=n_strange, p=_SOCIAL_TYPES_STRANGER)

    handle_index = np.concatenate([person, people.n + stranger])  # into handle ++ stranger_handle
    day = np.concatenate([t.astype(np.int64), stranger_day])
    tz = np.concatenate([people.tz[person], stranger_tz])
    platform = np.concatenate([social.platform[person], stranger_platform[stranger]])
    kind = np.concatenate([kind, stranger_kind])
    person = np.concatenate([person, np.full(n_strange, -1)])
    n = person.size
    utc = _place_in_day(clock, day, _local_seconds_of_day(rng, n, _SHOP_HOURS), tz)
    lag = rng.geometric(0.3, n) - 1  # days since the post interacted with was published
    post_no = np.maximum(_SOCIAL_POSTS_BEFORE + np.floor_divide(day - lag, 2), 1)
    has_post = np.isin(kind, [SOCIAL_INTERACTIONS.index(k) for k in ("like", "comment", "share")])
    with_email = (person >= 0) & (rng.random(n) < _SOCIAL_EMAIL_SHARE)
    email_slot = _SLOT_EMAIL + rng.integers(0, _N_EMAIL_VARIANTS, n)
    landing = _landing_delay(rng, day, days)

    # Ids follow interaction time; exact duplicates are extra copies in the same file.
    interaction_no = np.empty(n, dtype=np.int64)
    interaction_no[_sort_rows(utc, np.arange(n))] = np.arange(1, n + 1)
    dup_src = np.flatnonzero(rng.random(n) < DUPLICATE_SHARE)
    src = np.concatenate([np.arange(n), dup_src])
    row_landing = landing[src]
    order = _sort_rows(row_landing, utc[src], np.arange(src.size))
    src, row_landing = src[order], row_landing[order]
    emailed = with_email[src]
    ids = _seen_keys(people.n, (person[src][emailed], email_slot[src][emailed]))
    handles = pa.concat_arrays([social.handle, stranger_handle])
    p_safe = np.maximum(person, 0)

    def render(lo: int, hi: int) -> pa.Array:
        s = src[lo:hi]
        post = _join("P-", _lookup(_SOCIAL_POST_CODES, platform[s]), "-", _int_str(post_no[s], 6))
        return _json_lines(
            [
                ("interaction_id", _join("SI-", _int_str(interaction_no[s], 10)), True),
                ("interacted_at", _join(_clock_strings(clock, utc[s]), "Z"), True),
                ("platform", _lookup(SOCIAL_PLATFORMS, platform[s]), True),
                ("post_id", _maybe(post, has_post[s]), True),
                ("interaction_type", _lookup(SOCIAL_INTERACTIONS, kind[s]), True),
                ("handle", pc.take(handles, pa.array(handle_index[s])), True),
                ("user_email", _maybe(_keys(keys, people.n, email_slot[s], p_safe[s]), with_email[s]), True),
            ]
        )

    _write_text(root, "social_interactions", clock, row_landing, render)
    return _Written(
        rows=int(src.size), seen=ids, duplicates=int(dup_src.size), late=int((row_landing > day[src]).sum())
    )


# ================================================================================================
# crm_customers
# ================================================================================================
#: Marketing consent per channel in the CRM, drawn per person: (P(true), P(false)); the rest is empty
#: (unknown). E-mail follows the person's opt-in to the newsletter (people.opt_in), with a few unknown.
CONSENT_SHARES = {"sms": (0.35, 0.55), "ads": (0.5, 0.4)}
CONSENT_UNKNOWN_EMAIL = 0.05


def _consent_codes(rng: np.random.Generator, people: _People) -> dict[str, np.ndarray]:
    """Per person and channel: 0 = true, 1 = false, 2 = unknown (the CRM's empty field)."""
    codes = {"email": np.where(rng.random(people.n) < CONSENT_UNKNOWN_EMAIL, 2, np.where(people.opt_in, 0, 1))}
    for channel, (p_true, p_false) in CONSENT_SHARES.items():
        draw = rng.random(people.n)
        codes[channel] = np.where(draw < p_true, 0, np.where(draw < p_true + p_false, 1, 2))
    return codes


def _crm_customers(
    people: _People, keys: pa.Array, social: _Social, birth_date: np.ndarray, consent: dict[str, np.ndarray],
    clock: _Clock, root: Path,
) -> _Written:
    """CRM master rows: a full export of existing customers in the first file, then new signups, then
    re-exports of changed customers (new phone or moved) with a later updated_at. The social-media
    platform and handle (as entered) are there for ~70% of the customers who have an account; the birth
    date whenever the birth year is. Consent flags per channel were given at signup (consent_updated_at);
    the CRM does not learn of e-mail unsubscribes (the ESP's events carry them)."""
    crm = np.flatnonzero(~people.is_guest)
    changed = crm[people.change_sec[crm] >= 0]
    person = np.concatenate([crm, changed])
    is_change = np.concatenate([np.zeros(crm.size, bool), np.ones(changed.size, bool)])
    updated = np.where(is_change, people.change_sec[person], people.signup_sec[person])
    day = np.maximum(updated, 0) // SECONDS_PER_DAY
    order = _sort_rows(day, updated, people.crm_num[person], is_change)
    person, is_change, updated, day = person[order], is_change[order], updated[order], day[order]
    new_phone = is_change & (people.change_kind[person] == 0)
    moved = is_change & (people.change_kind[person] == 1)
    variant = people.crm_phone_variant[person]
    phone_present = (variant >= 0) | new_phone
    phone_slot = np.where(new_phone, _SLOT_PHONE_NEW, _SLOT_PHONE) + np.maximum(variant, 0)
    email_slot = _SLOT_EMAIL + people.crm_email_variant[person]
    card_slot = _SLOT_CARD + people.crm_card_variant[person]
    card = people.has_card[person]
    ids = _seen_keys(
        people.n,
        (person, _SLOT_CRM),
        (person, email_slot),
        (person[phone_present], phone_slot[phone_present]),
        (person[card], card_slot[card]),
    )
    city = np.where(moved, people.new_city[person], people.city[person])
    street = np.where(moved, people.new_street[person], people.street[person])

    def render(lo: int, hi: int) -> pa.Array:
        k = slice(lo, hi)
        p = person[k]
        by = people.birth_year[p]
        return _csv_lines(
            [
                _keys(keys, people.n, _SLOT_CRM, p),
                _keys(keys, people.n, email_slot[k], p),
                _maybe(_keys(keys, people.n, phone_slot[k], p), phone_present[k]),
                _lookup(FIRST_NAMES, people.first_idx[p]),
                _lookup(LAST_NAMES, people.last_idx[p]),
                _join(_int_str(people.house[p]), " ", _lookup(STREETS, street[k])),
                _lookup([c[0] for c in _CITY_FLAT], city[k]),
                _lookup([c[1] for c in _CITY_FLAT], city[k]),
                _lookup(COUNTRIES, people.country[p]),
                _maybe(_int_str(by), by > 0),
                _lookup(("f", "m", "x", ""), people.gender[p]),
                _any_dates(clock, people.signup_sec[p]),
                _lookup(SIGNUP_SOURCES, people.signup_source[p]),
                _maybe(_keys(keys, people.n, card_slot[k], p), card[k]),
                _join(_any_timestamps(clock, updated[k]), "Z"),
                _maybe(_lookup(SOCIAL_PLATFORMS, social.platform[p]), social.in_crm[p]),
                _maybe(pc.take(social.crm_handle, pa.array(p)), social.in_crm[p]),
                _maybe(pa.array(birth_date[p]).cast(pa.string()).cast(_L), by > 0),
                *(_lookup(("true", "false", ""), consent[channel][p]) for channel in ("email", "sms", "ads")),
                _join(_any_timestamps(clock, people.signup_sec[p]), "Z"),
            ]
        )  # fmt: skip

    header = (",".join(SOURCE_COLUMNS["crm_customers"]) + "\n").encode()
    _write_text(root, "crm_customers", clock, day, render, header)
    return _Written(rows=int(person.size), seen=ids)


def _birth_dates(rng: np.random.Generator, birth_year: np.ndarray) -> np.ndarray:
    """Date of birth per person in their birth year (datetime64[D]; 1 January where the year is unknown, 0).

    Month and day are uniform over the real calendar days of the year; on top of that a fixed share of
    the people born in a leap year (_LEAP_DAY_SHARE, at least one when there is anyone) is born on
    29 February, so that leap-day birthdays always occur.
    """
    n = birth_year.size
    known = birth_year > 0
    year = np.where(known, birth_year, 2000)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    day_of_year = rng.integers(0, 365 + leap.astype(np.int64), n)
    leap_born = np.flatnonzero(known & leap)
    leap_day = min(leap_born.size, max(1, round(_LEAP_DAY_SHARE * leap_born.size)))
    day_of_year[rng.choice(leap_born, size=leap_day, replace=False)] = 31 + 28  # 29 February
    jan_1 = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    return np.where(known, jan_1 + day_of_year.astype("timedelta64[D]"), jan_1)


def _any_dates(clock: _Clock, seconds: np.ndarray) -> pa.Array:
    """ISO dates for times that may lie years before the window (calendar table does not reach)."""
    days = np.floor_divide(seconds, SECONDS_PER_DAY)
    stamps = np.datetime64(clock.start, "D") + days.astype("timedelta64[D]")
    return pa.array(stamps.astype("datetime64[D]")).cast(pa.string()).cast(_L)


def _any_timestamps(clock: _Clock, seconds: np.ndarray) -> pa.Array:
    """'YYYY-MM-DDTHH:MM:SS' for times that may lie years before the window."""
    sod = np.mod(seconds, SECONDS_PER_DAY)
    return _join(
        _any_dates(clock, seconds),
        "T",
        pc.take(_TWO_DIGITS, pa.array(sod // 3600)),
        ":",
        pc.take(_TWO_DIGITS, pa.array(sod // 60 % 60)),
        ":",
        pc.take(_TWO_DIGITS, pa.array(sod % 60)),
    )


# ================================================================================================
# Ground truth
# ================================================================================================
def _write_ground_truth(
    out: Path,
    people: _People,
    keys: pa.Array,
    first_day: np.ndarray,
    churn_day: np.ndarray,
    clock: _Clock,
    social: _Social,
    birth_date: np.ndarray,
    seen: Mapping[str, np.ndarray],
    last_before_campaigns: np.ndarray,
) -> None:
    """customers.parquet (latent truth) and identities.parquet (every key each person appeared under)."""
    out.mkdir(parents=True, exist_ok=True)
    start = np.datetime64(clock.start, "D")
    account = social.has_account
    customers = pa.table(
        {
            "person_id": pa.array(np.arange(1, people.n + 1, dtype=np.int64)),
            "crm_customer_id": _keys(keys, people.n, _SLOT_CRM, np.arange(people.n)).cast(pa.string()),
            "behaviour_type": _lookup(TYPE_NAMES, people.type_code).cast(pa.string()),
            "first_purchase_date": _dates_or_null(start, first_day),
            "churn_date": _dates_or_null(start, churn_day),
            "is_guest": pa.array(people.is_guest),
            "favourite_category": _lookup(CATEGORIES, people.favourite_category).cast(pa.string()),
            "social_platform": _maybe(_lookup(SOCIAL_PLATFORMS, social.platform), account).cast(pa.string()),
            "social_handle": _maybe(social.handle, account).cast(pa.string()),
            "social_handle_in_crm": pa.array(social.in_crm),
            "social_level": _maybe(_lookup(SOCIAL_LEVELS, np.maximum(social.level, 0)), account).cast(pa.string()),
            "is_advocate": pa.array(social.is_advocate),
            "birth_date": pa.array(birth_date, mask=people.birth_year <= 0, type=pa.date32()),
            # who a demo campaign is meant for (DemoCampaign.lapsed_days): the last purchase on or before the
            # campaigns' first night
            "last_purchase_before_campaigns": _dates_or_null(start, last_before_campaigns),
        }
    )
    pq.write_table(customers, out / "customers.parquet", compression="snappy")

    key_ids = [np.flatnonzero(seen[name]) for name in SOURCES]
    key_id = np.concatenate(key_ids)
    source = np.repeat(np.arange(len(SOURCES)), [k.size for k in key_ids])
    slot, person = np.divmod(key_id, people.n)
    order = _sort_rows(person, source, slot)
    key_id, source, person = key_id[order], source[order], person[order]
    identities = pa.table(
        {
            "person_id": pa.array(person + 1),
            "source": _lookup(SOURCES, source).cast(pa.string()),
            "source_key": pc.take(keys, pa.array(key_id)).cast(pa.string()),
        }
    )
    pq.write_table(identities, out / "identities.parquet", compression="snappy")


def _dates_or_null(start: np.datetime64, day: np.ndarray) -> pa.Array:
    values = start + np.maximum(day, 0).astype("timedelta64[D]")
    return pa.array(values.astype("datetime64[D]"), mask=day < 0, type=pa.date32())


# ================================================================================================
# Entry point
# ================================================================================================
#: Append new streams at the end: spawn() derives each child from its position, so the earlier ones
#: (and every channel drawing from them) stay as they were.
_STREAMS = (
    "people", "keys", "purchases", "shop", "pos", "web", "email", "support", "social", "interests",
    "subjects", "birthdays", "promos", "campaigns", "consent",
)  # fmt: skip


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """One independent PCG64 stream per concern, in a fixed order."""
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {
        name: np.random.Generator(np.random.PCG64(child))
        for name, child in zip(_STREAMS, children, strict=True)
    }


def _purchase_days(
    people: _People, purchases: _Purchases, dropped: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Truth dates as day indices (-1 = none): first purchase, and churn = day of the last purchase."""
    first = np.full(people.n, np.iinfo(np.int64).max)
    last = np.full(people.n, -1, dtype=np.int64)
    np.minimum.at(first, purchases.person, purchases.day)
    np.maximum.at(last, purchases.person, purchases.day)
    first = np.where(first == np.iinfo(np.int64).max, -1, first)
    churn = np.where(dropped & (last >= 0), last, -1)
    return first, churn


def generate(
    out_dir: Path | str,
    customers: int = 1000,
    days: int = 365,
    end_date: date = DEFAULT_END_DATE,
    seed: int = 42,
    invalid_share: float = 0.003,
    *,
    hash_key: str | None = None,
    campaigns: bool = True,
) -> GenerationSummary:
    """Simulate `customers` people over the `days` days ending `end_date` and write landing + truth.

    Landing files go to ``<out_dir>/landing/<path of docs/sources.md>``, one per source and day
    (header-only / empty / zero-row when nothing happened); the truth to ``<out_dir>/ground_truth/``;
    the demo campaigns (DEMO_CAMPAIGNS) to ``<out_dir>/campaigns.yml``. Their treated people's response
    orders are appended to the shop orders; who is treated follows the pipeline's holdout rule, so it
    depends on `hash_key`, the key the warehouse will run with (None: the configured one,
    CUSTSEG_HASH_KEY). The same arguments (and key) always produce byte-identical files.
    `campaigns=False` plants none and writes no campaigns file: data for measuring the models against the
    latent behaviour alone (a campaign's extra orders at the end are an intervention outside it).
    """
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if days < 1:
        raise ValueError("days must be at least 1")
    if not 0.0 <= invalid_share <= 0.5:
        raise ValueError("invalid_share must be between 0 and 0.5")
    key = load_settings().hash_key if hash_key is None else hash_key
    out = Path(out_dir)
    landing, truth = out / "landing", out / "ground_truth"
    start = end_date - timedelta(days=days - 1)
    clock = _make_clock(start, days)
    rng = _streams(seed)

    people = _make_people(rng["people"], customers, clock)
    keys = _make_key_table(rng["keys"], people)
    purchases, dropped = _simulate_purchases(rng["purchases"], people, days)
    first_day, churn_day = _purchase_days(people, purchases, dropped)

    shop = _shop_orders(rng["shop"], rng["promos"], people, keys, purchases, clock, landing, invalid_share)
    first_nights = [clock.days - 1 - campaign.starts_days_before_end for campaign in DEMO_CAMPAIGNS]
    last_purchase_by_day = {day: _last_purchase_day(purchases, people.n, day) for day in set(first_nights)}
    responses = _campaign_responses(rng["campaigns"], people, keys, clock, key, last_purchase_by_day)
    if not campaigns:
        responses = _Responses(*(getattr(responses, f.name)[:0] for f in fields(_Responses)))
    last_before_campaigns = last_purchase_by_day[first_nights[0]]
    planted = _append_shop_responses(landing, responses, people, keys, clock)
    shop = replace(shop, rows=shop.rows + planted.rows, seen=shop.seen | planted.seen)
    pos = _pos_sales(rng["pos"], people, keys, purchases, clock, landing)
    del purchases
    web = _web_sessions(rng["web"], rng["interests"], people, keys, churn_day, clock, landing)
    email = _email_events(rng["email"], people, keys, churn_day, clock, landing)
    support = _support_tickets(rng["support"], rng["subjects"], people, keys, first_day, churn_day, clock, landing)
    social_profile = _make_social(rng["social"], people)
    social = _social_interactions(rng["social"], people, keys, social_profile, churn_day, clock, landing)
    birth_date = _birth_dates(rng["birthdays"], people.birth_year)
    consent = _consent_codes(rng["consent"], people)
    crm = _crm_customers(people, keys, social_profile, birth_date, consent, clock, landing)
    results = {
        "shop_orders": shop,
        "pos_sales": pos,
        "web_sessions": web,
        "crm_customers": crm,
        "email_events": email,
        "support_tickets": support,
        "social_interactions": social,
    }
    _write_ground_truth(
        truth, people, keys, first_day, churn_day, clock, social_profile, birth_date,
        {s: r.seen for s, r in results.items()},
        last_before_campaigns,
    )
    _write_campaign_truth(truth, responses, people, keys, clock)
    if campaigns:
        _write_campaigns_file(out, end_date)
    return GenerationSummary(
        out_dir=out,
        landing_dir=landing,
        ground_truth_dir=truth,
        start_date=start,
        end_date=end_date,
        customers=customers,
        seed=seed,
        rows=MappingProxyType({s: results[s].rows for s in SOURCES}),
        invalid_rows=MappingProxyType({s: results[s].invalid for s in SOURCES}),
        invalid_kinds=MappingProxyType(dict(zip(INVALID_KINDS, shop.invalid_kinds, strict=True))),
        duplicate_rows=MappingProxyType({s: results[s].duplicates for s in SOURCES}),
        late_rows=MappingProxyType({s: results[s].late for s in SOURCES}),
        campaign_responses=MappingProxyType(
            {c.campaign_id: int((responses.realised & (responses.campaign == k)).sum())
             for k, c in enumerate(DEMO_CAMPAIGNS)}
        ),
    )


def main(argv: list[str] | None = None) -> None:
    """`python -m custseg.demo.generate`: a thin runner for benchmarks (the project CLI wraps `generate`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", default="data")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--end-date", type=date.fromisoformat, default=DEFAULT_END_DATE)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--invalid-share", type=float, default=0.003)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    summary = generate(args.out, args.customers, args.days, args.end_date, args.seed, args.invalid_share)
    print(f"wrote {summary.landing_dir} ({summary.start_date}..{summary.end_date}) "
          f"in {time.perf_counter() - began:.1f}s")  # fmt: skip
    for source in SOURCES:
        print(f"  {source:19s} rows={summary.rows[source]:>11,d} invalid={summary.invalid_rows[source]:,d} "
              f"dup={summary.duplicate_rows[source]:,d} late={summary.late_rows[source]:,d}")  # fmt: skip


if __name__ == "__main__":
    main()
