"""Behavioural segmentation: log1p → standardise → k-means, with stable ids and readable names.

Why this shape:

* Money and count features are heavily right-skewed; without ``log1p`` a handful of big
  spenders would own whole clusters. Shares (0..1) are left as they are.
* ``StandardScaler`` gives every feature the same weight in the Euclidean distance.
* ``k`` is chosen by the silhouette score over ``k_range`` (default 3..8: fewer than 3 segments
  is not actionable for marketing, more than 8 is not readable in BI). The silhouette is
  O(n²), so it is computed on a fixed-seed sample of at most ``silhouette_sample`` rows.
  Above ``search_sample`` rows (default 100,000) the candidate k's are fitted on a fixed-seed
  sample of that size and only the chosen k is refitted on every row, from the sample's
  centroids; the k search is a model-selection question that a sample answers.
* Above ``minibatch_threshold`` rows, ``MiniBatchKMeans`` replaces ``KMeans`` (linear memory
  and time; the centroids differ negligibly on large data).
* K-means runs under ``threadpoolctl`` with ``n_threads`` (default 1): OpenMP threads spin-wait
  and slow down badly on a busy worker (see ``ml.churn``); results do not depend on it.
* K-means numbers clusters arbitrarily. Ids are first made canonical (largest cluster = 0) and,
  when the previous run's centroids are given, matched to them with the Hungarian algorithm so
  "cluster 2" keeps meaning the same customers week after week.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn import config_context
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from ml.features import FEATURE_COLUMNS, select_columns

SILHOUETTE_WORKING_MB = 64
"""Memory (MB) for each block of the silhouette's pairwise distances; the score is the same for any."""

LOG_FEATURES: frozenset[str] = frozenset(
    {
        "recency_days",
        "frequency",
        "monetary",
        "tenure_days",
        "avg_order_value",
        "category_breadth",
        "orders_90d",
        "spend_90d",
        "web_sessions_90d",
    }
)
"""Skewed money/count/duration features that get ``log1p`` before scaling."""

DEFAULT_K_RANGE: tuple[int, int] = (3, 8)
"""Inclusive range of cluster counts tried when ``k`` is not fixed."""

PROSPECT_CLUSTER_NAME = "prospects (no purchase yet)"

MIN_CLUSTER_SHARE = 0.01
MIN_CLUSTER_SIZE = 10
"""A cluster with fewer than ``max(MIN_CLUSTER_SIZE, MIN_CLUSTER_SHARE × customers)`` members is
degenerate: a handful of outliers (on CDNOW, the 8 buyers whose orders are all $0) that no
campaign would target and whose profile is noise. It is merged into the nearest clusters."""

STICKY_SILHOUETTE = 0.02
"""With ``previous_k`` (the current model's cluster count), a refit keeps that many clusters unless
another k's silhouette is higher by more than this: on CDNOW as of 1998-04-30, k = 4 and k = 7 were
0.405 and 0.401, and flipping between them would rename every segment for noise."""

NO_SPEND_NAME = "no spend yet"
"""The name of a cluster whose members have spent nothing on average (free or fully refunded orders)."""


class Log1pColumns(TransformerMixin, BaseEstimator):
    """Apply ``log1p`` (after clipping at 0) to the columns flagged in ``mask``; pass the rest through."""

    def __init__(self, mask: Sequence[bool] = ()) -> None:
        self.mask = mask

    def fit(self, X: np.ndarray, y: object = None) -> Log1pColumns:
        self.mask_ = np.asarray(self.mask, dtype=bool)
        if self.mask_.size != np.asarray(X).shape[1]:
            raise ValueError("mask length must equal the number of columns")
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "mask_")
        out = np.array(X, dtype=float, copy=True)
        out[:, self.mask_] = np.log1p(np.clip(out[:, self.mask_], 0.0, None))
        return out

    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "mask_")
        out = np.array(X, dtype=float, copy=True)
        out[:, self.mask_] = np.expm1(out[:, self.mask_])
        return out


def align_labels(new_centroids: np.ndarray, old_centroids: np.ndarray) -> dict[int, int]:
    """Map each new cluster index to an old cluster index minimising total centroid distance.

    Both arrays must be in the same (comparable) space, one row per cluster; old row ``j``
    is old cluster id ``j``. Solved exactly with the Hungarian algorithm
    (``scipy.optimize.linear_sum_assignment``). When there are more new clusters than old
    ones, the unmatched new clusters get fresh ids after the old ones, in order of index.
    """
    new = np.asarray(new_centroids, dtype=float)
    old = np.asarray(old_centroids, dtype=float)
    if new.ndim != 2 or old.ndim != 2 or new.shape[1] != old.shape[1]:
        raise ValueError("centroid arrays must be 2-D with the same number of columns")
    cost = np.linalg.norm(new[:, None, :] - old[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(cost)
    mapping = {int(r): int(c) for r, c in zip(rows, cols, strict=True)}
    next_id = old.shape[0]
    for r in range(new.shape[0]):
        if r not in mapping:
            mapping[r] = next_id
            next_id += 1
    return mapping


class BehaviourClusterer(ClusterMixin, BaseEstimator):
    """Pipeline(log1p on skewed columns, StandardScaler, KMeans) with ``k`` chosen by silhouette.

    Fitted attributes: ``k_``, ``silhouette_`` (of the chosen k, NaN if k < 2),
    ``silhouette_by_k_``, ``pipeline_``, ``centroids_`` (DataFrame indexed by stable cluster id, in
    original feature units, used by :meth:`align_to` next time), ``labels_`` and ``label_map_``
    (raw k-means index → public cluster id).
    """

    def __init__(
        self,
        *,
        features: Sequence[str] = FEATURE_COLUMNS,
        k: int | None = None,
        k_range: tuple[int, int] = DEFAULT_K_RANGE,
        random_state: int = 0,
        silhouette_sample: int = 10_000,
        search_sample: int = 100_000,
        minibatch_threshold: int = 50_000,
        n_init: int = 10,
        n_threads: int | None = 1,
        min_cluster_share: float = MIN_CLUSTER_SHARE,
        min_cluster_size: int = MIN_CLUSTER_SIZE,
        previous_k: int | None = None,
    ) -> None:
        self.features = features
        self.k = k
        self.k_range = k_range
        self.random_state = random_state
        self.silhouette_sample = silhouette_sample
        self.search_sample = search_sample
        self.minibatch_threshold = minibatch_threshold
        self.n_init = n_init
        self.n_threads = n_threads
        self.min_cluster_share = min_cluster_share
        self.min_cluster_size = min_cluster_size
        self.previous_k = previous_k

    # -- fitting ---------------------------------------------------------------------------
    def _matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            return select_columns(X, self.features).to_numpy()
        arr = np.asarray(X, dtype=float)
        if arr.ndim != 2 or arr.shape[1] != len(self.features):
            raise ValueError(f"expected {len(self.features)} columns ({list(self.features)})")
        return arr

    def _kmeans(self, k: int, n: int) -> KMeans | MiniBatchKMeans:
        if n > self.minibatch_threshold:
            return MiniBatchKMeans(
                n_clusters=k, random_state=self.random_state, n_init=3, batch_size=4096, max_iter=200
            )
        return KMeans(n_clusters=k, random_state=self.random_state, n_init=self.n_init)

    def min_size(self, n: int) -> int:
        """Smallest cluster kept for ``n`` customers (see :data:`MIN_CLUSTER_SHARE`)."""
        return max(int(self.min_cluster_size), int(np.ceil(self.min_cluster_share * n)))

    def _merge_small(self, km: KMeans | MiniBatchKMeans, Z: np.ndarray) -> tuple[KMeans | MiniBatchKMeans, int]:
        """Drop the centroid of every degenerate cluster and let k-means settle from the others.

        The smallest cluster below :meth:`min_size` loses its centroid, and k-means is refitted
        from the remaining centroids (one start, so the other clusters stay where they were and
        only absorb the orphans); repeated until every cluster is large enough. Returns the model
        and the number of clusters merged away."""
        merged = 0
        floor = self.min_size(Z.shape[0])
        while km.cluster_centers_.shape[0] > 1:
            sizes = np.bincount(km.labels_, minlength=km.cluster_centers_.shape[0])
            smallest = int(np.argmin(sizes))
            if sizes[smallest] >= floor:
                break
            kept = np.delete(km.cluster_centers_, smallest, axis=0)
            k = kept.shape[0]
            if Z.shape[0] > self.minibatch_threshold:
                km = MiniBatchKMeans(n_clusters=k, init=kept, n_init=1, random_state=self.random_state,
                                     batch_size=4096, max_iter=200).fit(Z)
            else:
                km = KMeans(n_clusters=k, init=kept, n_init=1, random_state=self.random_state).fit(Z)
            merged += 1
        return km, merged

    def _candidate_ks(self, Z: np.ndarray) -> list[int]:
        if self.k is not None:
            ks = [int(self.k)]
        else:
            lo, hi = self.k_range
            ks = list(range(int(lo), int(hi) + 1))
        # k-means cannot place more centroids than there are distinct points, and the
        # silhouette needs 2 <= k <= n - 1.
        n_distinct = len(np.unique(np.round(Z, 9), axis=0))
        return [k for k in ks if k <= n_distinct and k <= Z.shape[0] - 1] or [max(1, min(n_distinct, 2))]

    def fit(self, X: pd.DataFrame | np.ndarray, y: object = None) -> BehaviourClusterer:
        """Fit the preprocessing once, k-means for every candidate k, keep the best silhouette."""
        with threadpool_limits(limits=self.n_threads):
            return self._fit(self._matrix(X))

    def _fit(self, raw: np.ndarray) -> BehaviourClusterer:
        if raw.shape[0] == 0:
            raise ValueError("cannot cluster zero customers")
        if not np.isfinite(raw).all():
            raise ValueError("features contain NaN or infinite values")
        mask = [f in LOG_FEATURES for f in self.features]
        prep = Pipeline([("log1p", Log1pColumns(mask)), ("scale", StandardScaler())]).fit(raw)
        Z = prep.transform(raw)
        n = Z.shape[0]
        rng = np.random.default_rng(self.random_state)
        # Above search_sample rows, every candidate k is fitted on a fixed random sample and only
        # the chosen k is refitted on all rows, starting from the sample's centroids: the k search
        # (six fits) is what dominated clustering at a million customers, and k needs far fewer rows.
        search = np.sort(rng.choice(n, size=self.search_sample, replace=False)) if n > self.search_sample else None
        Z_search = Z if search is None else Z[search]
        n_search = Z_search.shape[0]
        sample = (
            np.sort(rng.choice(n_search, size=self.silhouette_sample, replace=False))
            if n_search > self.silhouette_sample
            else np.arange(n_search)
        )

        scores: dict[int, float] = {}
        best: tuple[float, int, KMeans | MiniBatchKMeans] | None = None
        merged_by_k: dict[int, int] = {}
        candidates: dict[int, tuple[float, int, KMeans | MiniBatchKMeans]] = {}
        for k in self._candidate_ks(Z_search):
            # degenerate clusters are merged before the silhouette judges k, so a k that only
            # "wins" by isolating a handful of outliers is scored as the k it really gives
            km, merged_by_k[k] = self._merge_small(self._kmeans(k, n_search).fit(Z_search), Z_search)
            labels = km.labels_[sample]
            # The distances are computed in blocks of rows; sklearn's default block (working_memory
            # 1 GB) held the whole 10,000² matrix and its temporaries at once, the score task's peak.
            with config_context(working_memory=SILHOUETTE_WORKING_MB):
                score = (
                    float(silhouette_score(Z_search[sample], labels, random_state=self.random_state))
                    if 1 < len(np.unique(labels)) < len(sample)
                    else float("nan")
                )
            scores[k] = score
            candidates[k] = (score, k, km)
            # Strictly greater: ties keep the smaller, more readable k. NaN never wins unless alone.
            if best is None or (not np.isnan(score) and (np.isnan(best[0]) or score > best[0])):
                best = (score, k, km)
        assert best is not None
        if self.previous_k is not None and not np.isnan(best[0]):
            # Stability: keep the current model's number of clusters unless another k is clearly
            # better; silhouettes a few thousandths apart are noise, and a new k renames segments.
            same = [c for c in candidates.values()
                    if c[2].cluster_centers_.shape[0] == self.previous_k and not np.isnan(c[0])]
            if same:
                keep = max(same, key=lambda c: (c[0], -c[1]))
                if best[0] - keep[0] <= STICKY_SILHOUETTE:
                    best = keep
        if search is not None:
            score, k, km = best
            full = MiniBatchKMeans(n_clusters=km.cluster_centers_.shape[0], init=km.cluster_centers_, n_init=1,
                                   random_state=self.random_state, batch_size=4096, max_iter=200).fit(Z)
            full, _ = self._merge_small(full, Z)
            best = (score, k, full)
        self.merged_by_k_ = merged_by_k
        self.silhouette_, k_searched, km = best
        self.k_ = int(km.cluster_centers_.shape[0])
        self.merged_clusters_ = int(k_searched - self.k_)
        self.silhouette_by_k_ = scores
        self.pipeline_ = Pipeline(
            [("log1p", prep.named_steps["log1p"]), ("scale", prep.named_steps["scale"]), ("kmeans", km)]
        )
        self.n_features_in_ = raw.shape[1]
        # Canonical ids: largest cluster first, ties by the raw index, so ids never depend on
        # the k-means initialisation order alone.
        sizes = np.bincount(km.labels_, minlength=self.k_)
        order = sorted(range(self.k_), key=lambda c: (-sizes[c], c))
        self.label_map_ = {raw_id: new_id for new_id, raw_id in enumerate(order)}
        self.labels_ = self._map(km.labels_)
        return self

    # -- prediction ------------------------------------------------------------------------
    def _map(self, raw_labels: np.ndarray) -> np.ndarray:
        lookup = np.array([self.label_map_[i] for i in range(len(self.label_map_))])
        return lookup[np.asarray(raw_labels)]

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Stable cluster id per row."""
        check_is_fitted(self, "pipeline_")
        with threadpool_limits(limits=self.n_threads):
            return self._map(self.pipeline_.predict(self._matrix(X)))

    def fit_predict(self, X: pd.DataFrame | np.ndarray, y: object = None, **kwargs: object) -> np.ndarray:
        return self.fit(X).labels_

    def transform_features(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Rows in the model's standardised space (log1p + scale), e.g. for distances or plots."""
        check_is_fitted(self, "pipeline_")
        return self.pipeline_[:-1].transform(self._matrix(X))

    # -- centroids and alignment -----------------------------------------------------------
    @property
    def centroids_(self) -> pd.DataFrame:
        """Cluster centres in original feature units, indexed by public cluster id."""
        check_is_fitted(self, "pipeline_")
        scaled = self.pipeline_.named_steps["kmeans"].cluster_centers_
        logged = self.pipeline_.named_steps["scale"].inverse_transform(scaled)
        raw = self.pipeline_.named_steps["log1p"].inverse_transform(logged)
        frame = pd.DataFrame(raw, columns=list(self.features))
        frame.index = pd.Index([self.label_map_[i] for i in range(len(frame))], name="cluster_id")
        return frame.sort_index()

    def align_to(self, previous_centroids: pd.DataFrame) -> dict[int, int]:
        """Renumber clusters to match ``previous_centroids`` (a previous run's ``centroids_``).

        ``previous_centroids`` is indexed by cluster id, or has a ``cluster_id`` column, and has
        (at least) this model's feature columns.

        Both sets of centroids are projected with *this* model's log1p + scaler, so the distance
        is measured in the space the clusters were found in. Returns the applied mapping
        (old public id → new public id) and updates ``labels_``, ``label_map_``, ``centroids_``.
        """
        check_is_fitted(self, "pipeline_")
        old = previous_centroids
        if "cluster_id" in old.columns:  # as read back from a table rather than from centroids_
            old = old.set_index("cluster_id")
        old = old.sort_index()
        old_ids = [int(i) for i in old.index]
        old_z = self.transform_features(select_columns(old, self.features))
        current = self.centroids_
        new_z = self.transform_features(current)
        mapping = align_labels(new_z, old_z)
        # align_labels numbers old clusters 0..m-1 by position; translate to their real ids and
        # give unmatched new clusters ids above every old id.
        fresh = iter(range(max(old_ids, default=-1) + 1, 10**9))
        by_position = {
            int(current.index[r]): (old_ids[c] if c < len(old_ids) else next(fresh)) for r, c in sorted(mapping.items())
        }
        self.label_map_ = {raw: by_position[pub] for raw, pub in self.label_map_.items()}
        self.labels_ = (
            np.array([by_position[int(lbl)] for lbl in self.labels_]) if len(self.labels_) else (self.labels_)
        )
        return by_position


# -- profiles and names ----------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterTotals:
    """Per ``cluster_id``: the customers, and the sum and the count of non-missing values of every
    numeric feature. The totals of chunks of customers add up (``+``) to those of all of them, so a
    run that scores in chunks gets the same profiles without holding every customer's features."""

    customers: pd.Series
    sums: pd.DataFrame
    counts: pd.DataFrame

    @classmethod
    def of(cls, X: pd.DataFrame, labels: np.ndarray | pd.Series) -> ClusterTotals:
        grouped = X.select_dtypes("number").groupby(np.asarray(labels, dtype=int), sort=True)
        sums, counts = grouped.sum(), grouped.count()
        sums.index = counts.index = sums.index.rename("cluster_id")
        return cls(grouped.size().astype(int).rename_axis("cluster_id"), sums, counts)

    def __add__(self, other: ClusterTotals) -> ClusterTotals:
        return ClusterTotals(
            self.customers.add(other.customers, fill_value=0).astype(int),
            self.sums.add(other.sums, fill_value=0.0),
            self.counts.add(other.counts, fill_value=0),
        )

    def profiles(
        self, names: Mapping[int, str] | None = None, previous_names: Mapping[int, str] | None = None
    ) -> pd.DataFrame:
        """One row per cluster: ``cluster_id``, ``customers``, mean of every feature, ``cluster_name``."""
        profiles = self.sums / self.counts.where(self.counts > 0)
        profiles.insert(0, "customers", self.customers.astype(int))
        names = dict(names) if names is not None else name_clusters(profiles, previous_names)
        profiles["cluster_name"] = [names[int(c)] for c in profiles.index]
        return profiles.reset_index()


def cluster_profiles(
    X: pd.DataFrame, labels: np.ndarray | pd.Series, names: Mapping[int, str] | None = None,
    previous_names: Mapping[int, str] | None = None,
) -> pd.DataFrame:
    """One row per cluster: ``cluster_id``, ``customers``, mean of every numeric column, ``cluster_name``.

    Names are ``names`` when given (scoring with a fitted model's names), else :func:`name_clusters`
    of these profiles, with ``previous_names`` (the current model's) as its hysteresis.
    """
    return ClusterTotals.of(X, labels).profiles(names, previous_names)


def _weighted_overall(profiles: pd.DataFrame) -> pd.Series:
    numeric = profiles.drop(columns=["customers", "cluster_name"], errors="ignore").select_dtypes("number")
    if "customers" in profiles:
        w = profiles["customers"].astype(float)
        return (numeric.mul(w, axis=0).sum() / w.sum()) if w.sum() > 0 else numeric.mean()
    return numeric.mean()


def _ratio(value: float, overall: float) -> float:
    return float(value) / float(overall) if overall and np.isfinite(overall) and overall > 0 else 1.0


_CHANNEL_WORD = {"online_share": "online", "store_share": "store", "app_share": "app"}

@dataclass(frozen=True)
class Trait:
    """A profile column that can tell namesake clusters apart, with its words, lowest to highest."""

    column: str
    low: str  # of two clusters, the lower one
    high: str
    lowest: str  # of three or more, the lowest one
    highest: str
    mid: str  # of three or more, the ones in between
    log: bool  # compared on log1p (money, counts, durations) rather than as a share
    min_gap: float  # smallest difference (log1p or share points) that is worth a word


_TRAITS: tuple[Trait, ...] = (
    # In this order of priority: the first trait that separates all namesakes names them, so the
    # same clusters get the same words after a retrain unless their order on that trait changes.
    Trait("monetary", "lower spend", "higher spend", "lowest spend", "highest spend", "mid spend", True, 0.1),
    Trait("frequency", "less frequent", "more frequent", "least frequent", "most frequent", "mid frequency",
          True, 0.05),
    Trait("recency_days", "more recent", "less recent", "most recent", "least recent", "mid recency", True, 0.1),
    Trait("avg_order_value", "smaller baskets", "bigger baskets", "smallest baskets", "biggest baskets",
          "mid-size baskets", True, 0.1),
    Trait("discount_share", "less discount use", "more discount use", "least discount use", "most discount use",
          "some discount use", False, 0.03),
    Trait("category_breadth", "narrower range", "broader range", "narrowest range", "broadest range",
          "mid range", True, 0.05),
    Trait("online_share", "less online", "more online", "least online", "most online", "partly online", False, 0.03),
    Trait("store_share", "less in store", "more in store", "least in store", "most in store", "partly in store",
          False, 0.03),
    Trait("app_share", "less in the app", "more in the app", "least in the app", "most in the app",
          "partly in the app", False, 0.03),
    Trait("tenure_days", "shorter tenure", "longer tenure", "shortest tenure", "longest tenure", "mid tenure",
          True, 0.05),
)


def _base_name(row: pd.Series, overall: pd.Series) -> str:
    """Readable name from how a cluster's means compare to the customer-weighted overall mean."""
    get = row.get
    money = float(get("monetary", np.nan))
    if np.isfinite(money) and money < 0.01:  # bought, paid nothing: free or fully refunded orders
        return NO_SPEND_NAME
    freq = float(get("frequency", np.nan))
    freq_ratio = _ratio(freq, overall.get("frequency", np.nan))
    money_ratio = _ratio(get("monetary", np.nan), overall.get("monetary", np.nan))
    rec_ratio = _ratio(get("recency_days", np.nan), overall.get("recency_days", np.nan))
    disc = float(get("discount_share", 0.0) or 0.0)
    disc_overall = float(overall.get("discount_share", 0.0) or 0.0)

    one_timers = np.isfinite(freq) and freq < 1.5
    frequent = not one_timers and freq_ratio >= 1.5
    lapsed = rec_ratio >= 1.5
    recent = rec_ratio <= 0.5
    discount_driven = disc >= 0.15 and disc >= 1.5 * disc_overall

    shares = {w: float(get(c, np.nan)) for c, w in _CHANNEL_WORD.items() if c in row and np.isfinite(get(c))}
    channel = ""
    if shares:
        top_word, top_share = max(shares.items(), key=lambda kv: (kv[1], kv[0]))
        if top_share >= 0.7:
            channel = top_word
        elif sum(s >= 0.2 for s in shares.values()) >= 2:
            channel = "omnichannel"

    if one_timers:
        noun = "one-timers"
    elif money_ratio >= 1.5:
        noun = "high spenders"
    elif money_ratio <= 0.67:
        noun = "low spenders"
    elif channel in {"online", "store", "app"} and not lapsed:
        noun = "loyalists"
    else:
        noun = "regulars"

    words: list[str] = []
    if lapsed:
        words.append("lapsed")
    elif recent and not frequent and one_timers:
        words.append("new")
    if discount_driven:
        words.append("discount-driven")
    if frequent and noun != "loyalists":
        words.append("frequent")
    if channel:
        words.append(channel)
    words.append(noun)
    return " ".join(words)


def _rank_words(trait: Trait, n: int) -> list[str]:
    """Words for ``n`` namesakes sorted from lowest to highest on ``trait`` (all distinct up to 5)."""
    if n == 2:
        return [trait.low, trait.high]
    middle = {3: [trait.mid], 4: [trait.low, trait.high], 5: [trait.low, trait.mid, trait.high]}
    return [trait.lowest, *middle.get(n, [trait.mid] * (n - 2)), trait.highest]


def _trait_values(prof: pd.DataFrame, trait: Trait) -> pd.Series:
    values = prof[trait.column].astype(float)
    return np.log1p(values.clip(lower=0.0)) if trait.log else values


def _separate(prof: pd.DataFrame, group: list[int], used: set[str]) -> tuple[Trait, list[list[int]]] | None:
    """The trait that names ``group`` and its bands, lowest first.

    Sorted on a trait, namesakes fall into bands wherever two neighbours differ by at least the
    trait's ``min_gap``. The first trait (in :data:`_TRAITS` order) that puts every namesake in a
    band of its own wins; failing that, the first that gives two bands or more (the members of a
    shared band then get a further trait). None when no unused trait separates any of them."""
    partial: tuple[Trait, list[list[int]]] | None = None
    for trait in _TRAITS:
        if trait.column in used or trait.column not in prof:
            continue
        values = _trait_values(prof.loc[group], trait)
        if not np.isfinite(values).all():
            continue
        ordered = values.sort_values(kind="stable")
        bands: list[list[int]] = [[int(ordered.index[0])]]
        for previous, (cid, value) in zip(ordered.to_numpy(), list(ordered.items())[1:], strict=False):
            if value - previous >= trait.min_gap:
                bands.append([])
            bands[-1].append(int(cid))
        if len(bands) == len(group):
            return trait, bands
        if len(bands) > 1 and partial is None:
            partial = (trait, bands)
    return partial


_NUDGES: tuple[tuple[str, float, bool], ...] = (
    # column, step, relative: how far a profile may move before a kept name stops being true
    ("frequency", 0.1, True), ("monetary", 0.1, True), ("recency_days", 0.1, True),
    ("discount_share", 0.03, False), ("online_share", 0.05, False), ("store_share", 0.05, False),
    ("app_share", 0.05, False),
)
"""Hysteresis of :func:`name_clusters`: a cluster keeps its previous base name if one of these
nudges of its profile (±10 % of a count or amount, ±3-5 share points) would give that name, so
a profile that drifts across a word's threshold by a hair (online share 0.71 → 0.68 around 0.7)
is not renamed every week."""


def _kept_base_name(row: pd.Series, overall: pd.Series, previous: str) -> bool:
    for column, step, relative in _NUDGES:
        if column not in row or not np.isfinite(row[column]):
            continue
        for sign in (-1.0, 1.0):
            nudged = row.copy()
            nudged[column] = row[column] * (1.0 + sign * step) if relative else row[column] + sign * step
            if _base_name(nudged, overall) == previous:
                return True
    return False


def _base_of(name: str) -> str:
    """A full name without its bracket of distinguishing words."""
    return name.split(" (", 1)[0]


def name_clusters(profiles: pd.DataFrame, previous: Mapping[int, str] | None = None) -> dict[int, str]:
    """Deterministic, unique, human-readable names for clusters, from their profiles.

    ``profiles`` has one row per cluster (index or ``cluster_id`` column) with feature means
    and optionally ``customers``. Each name is built from the cluster's position relative to
    the customer-weighted mean of all clusters (e.g. "frequent omnichannel high spenders",
    "discount-driven online one-timers", "store loyalists", "lapsed low spenders"; a cluster
    that has spent nothing is "no spend yet").

    Clusters that get the same name are told apart by what differs between them, in brackets:
    the first trait of :data:`_TRAITS` (spend, frequency, recency, basket size, discount use,
    range, channel shares, tenure) on which every two of them differ by a meaningful step (else
    the first that separates some of them), as a rank among the namesakes: "(lower spend)" /
    "(higher spend)" for two, "(lowest spend)",
    "(mid spend)", "(highest spend)" for three, and so on. Namesakes that still share a name get
    the next trait as well. The bracket compares a cluster with its namesakes only; the words
    before it compare it with everyone. A cluster id never tells two names apart: only clusters
    whose profiles are identical on every trait (which k-means cannot produce) would need one.

    ``previous`` (the current model's names by cluster id, after :meth:`BehaviourClusterer.align_to`)
    keeps a cluster's previous base name while it stays nearly true (:data:`_NUDGES`); the bracket
    is recomputed, as it depends on the namesakes of today.
    """
    prof = profiles.set_index("cluster_id") if "cluster_id" in profiles.columns else profiles
    prof = prof.sort_index()
    overall = _weighted_overall(prof)
    names = {int(cid): _base_name(row, overall) for cid, row in prof.iterrows()}
    for cid, row in prof.iterrows():
        before = _base_of(previous[int(cid)]) if previous and int(cid) in previous else None
        if before is not None and before != names[int(cid)] and _kept_base_name(row, overall, before):
            names[int(cid)] = before
    used: dict[int, set[str]] = {cid: set() for cid in names}
    words: dict[int, list[str]] = {cid: [] for cid in names}

    def full(cid: int) -> str:
        return f"{names[cid]} ({', '.join(words[cid])})" if words[cid] else names[cid]

    for _ in range(len(_TRAITS)):
        current = {cid: full(cid) for cid in names}
        groups = [sorted(c for c in current if current[c] == name) for name in sorted(set(current.values()))]
        groups = [g for g in groups if len(g) > 1]
        if not groups:
            break
        for group in groups:
            chosen = _separate(prof, group, used[group[0]])
            if chosen is None:
                continue
            trait, bands = chosen
            for band, word in zip(bands, _rank_words(trait, len(bands)), strict=True):
                for cid in band:
                    words[cid].append(word)
                    used[cid].add(trait.column)
    result = {cid: full(cid) for cid in names}
    # Unreachable for k-means output (distinct centroids); kept so names are unique whatever the input.
    for cid in sorted(result):
        if list(result.values()).count(result[cid]) > 1:
            result[cid] = f"{result[cid]} (cluster {cid})"
    return result
