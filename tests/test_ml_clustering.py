"""Behaviour clustering: recovers planted types, stable ids across refits, unique readable names."""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from ml.clustering import NO_SPEND_NAME, BehaviourClusterer, align_labels, cluster_profiles, name_clusters
from ml.features import FEATURE_COLUMNS, customer_features
from ml.synthetic import make_customer_base

AS_OF = dt.date(2024, 6, 30)


@pytest.fixture(scope="module")
def planted() -> tuple[pd.DataFrame, np.ndarray]:
    data = make_customer_base(500, AS_OF, seed=0)
    features = customer_features(data.transactions, AS_OF, data.customers)
    truth = data.truth.set_index("customer_id").loc[features.index, "type_id"].to_numpy()
    return features, truth


@pytest.fixture(scope="module")
def fitted(planted: tuple[pd.DataFrame, np.ndarray]) -> BehaviourClusterer:
    return BehaviourClusterer(random_state=0).fit(planted[0])


def test_recovers_planted_types(fitted: BehaviourClusterer, planted: tuple[pd.DataFrame, np.ndarray]) -> None:
    features, truth = planted
    assert 3 <= fitted.k_ <= 8
    assert set(fitted.silhouette_by_k_) == set(range(3, 9))
    assert fitted.silhouette_ == max(fitted.silhouette_by_k_.values())
    assert adjusted_rand_score(truth, fitted.labels_) > 0.6
    # With k fixed to the true number of types the match is near perfect.
    three = BehaviourClusterer(k=3, random_state=0).fit(features)
    assert three.k_ == 3
    assert adjusted_rand_score(truth, three.labels_) > 0.9


def test_predict_is_consistent_and_deterministic(
    fitted: BehaviourClusterer, planted: tuple[pd.DataFrame, np.ndarray]
) -> None:
    features, _ = planted
    np.testing.assert_array_equal(fitted.predict(features), fitted.labels_)
    again = BehaviourClusterer(random_state=0).fit_predict(features)
    np.testing.assert_array_equal(again, fitted.labels_)
    # Canonical ids: cluster 0 is the largest.
    sizes = np.bincount(fitted.labels_)
    assert list(sizes) == sorted(sizes, reverse=True)
    # Row order of the input does not change anyone's cluster.
    shuffled = features.sample(frac=1.0, random_state=2)
    relabelled = pd.Series(BehaviourClusterer(random_state=0).fit_predict(shuffled), index=shuffled.index)
    assert adjusted_rand_score(relabelled.loc[features.index], fitted.labels_) > 0.99


def test_align_labels_undoes_a_permutation() -> None:
    rng = np.random.default_rng(0)
    old = rng.normal(size=(5, 4))
    perm = np.array([3, 0, 4, 1, 2])  # new cluster i is old cluster perm[i]
    new = old[perm] + rng.normal(scale=0.01, size=(5, 4))
    assert align_labels(new, old) == {i: int(perm[i]) for i in range(5)}
    # More new clusters than old: the extra one gets a fresh id after the old ones.
    extra = np.vstack([new, old[0] + 100.0])
    mapping = align_labels(extra, old)
    assert mapping[5] == 5
    assert sorted(mapping.values()) == list(range(6))


def test_align_to_keeps_ids_stable_across_refits(
    fitted: BehaviourClusterer, planted: tuple[pd.DataFrame, np.ndarray]
) -> None:
    features, _ = planted
    previous = fitted.centroids_
    # A refit with another seed and a shuffled id order: k-means numbers clusters arbitrarily.
    refit = BehaviourClusterer(random_state=7, k=fitted.k_).fit(features)
    permuted = {raw: (pub + 1) % refit.k_ for raw, pub in refit.label_map_.items()}
    refit.label_map_ = permuted
    refit.labels_ = refit._map(refit.pipeline_.named_steps["kmeans"].labels_)
    assert (refit.labels_ == fitted.labels_).mean() < 0.5  # ids really are scrambled
    refit.align_to(previous)
    assert (refit.labels_ == fitted.labels_).mean() > 0.95
    np.testing.assert_array_equal(refit.predict(features), refit.labels_)
    assert list(refit.centroids_.index) == list(previous.index)


def test_align_to_with_a_new_cluster_gives_it_a_fresh_id(
    fitted: BehaviourClusterer, planted: tuple[pd.DataFrame, np.ndarray]
) -> None:
    features, _ = planted
    previous = fitted.centroids_.iloc[:-1]  # last run had one cluster fewer
    refit = BehaviourClusterer(random_state=0, k=fitted.k_).fit(features)
    refit.align_to(previous.reset_index())  # as read back from a table: cluster_id is a column
    assert set(refit.labels_) == set(previous.index) | {previous.index.max() + 1}


def test_minibatch_path_for_large_inputs(planted: tuple[pd.DataFrame, np.ndarray]) -> None:
    features, truth = planted
    model = BehaviourClusterer(random_state=0, k=3, minibatch_threshold=100, silhouette_sample=200).fit(features)
    assert type(model.pipeline_.named_steps["kmeans"]).__name__ == "MiniBatchKMeans"
    assert adjusted_rand_score(truth, model.labels_) > 0.6


def test_k_search_on_a_sample_then_one_fit_on_every_row(
    fitted: BehaviourClusterer, planted: tuple[pd.DataFrame, np.ndarray]
) -> None:
    features, truth = planted
    # the large-data path, scaled down: candidates fitted on 250 of the 500 customers
    model = BehaviourClusterer(random_state=0, k_range=(3, 5), search_sample=250, minibatch_threshold=100).fit(features)
    assert set(model.silhouette_by_k_) == {3, 4, 5} and model.silhouette_ == max(model.silhouette_by_k_.values())
    assert len(model.labels_) == len(features) and set(model.labels_) == set(range(model.k_))
    assert adjusted_rand_score(truth, model.labels_) > 0.6
    again = BehaviourClusterer(random_state=0, k_range=(3, 5), search_sample=250, minibatch_threshold=100).fit(features)
    assert np.array_equal(again.labels_, model.labels_)
    # below search_sample nothing changes: the default model saw every row in its search
    assert len(features) <= fitted.search_sample


def test_profiles_and_names(fitted: BehaviourClusterer, planted: tuple[pd.DataFrame, np.ndarray]) -> None:
    features, _ = planted
    profiles = cluster_profiles(features, fitted.labels_)
    assert list(profiles["cluster_id"]) == list(range(fitted.k_))
    assert profiles["customers"].sum() == len(features)
    assert set(FEATURE_COLUMNS) <= set(profiles.columns)
    names = profiles["cluster_name"]
    assert names.is_unique
    assert all(isinstance(n, str) and n for n in names)
    # The planted types come out under telling names.
    joined = " | ".join(names)
    assert "discount-driven online one-timers" in joined
    assert "store" in joined
    assert "high spenders" in joined
    assert name_clusters(profiles.drop(columns="cluster_name")) == dict(zip(profiles["cluster_id"], names, strict=True))


def _profile(**overrides: float) -> dict[str, float]:
    base = {
        "customers": 100,
        "recency_days": 60,
        "frequency": 5,
        "monetary": 300,
        "avg_order_value": 60,
        "online_share": 0.4,
        "store_share": 0.4,
        "app_share": 0.2,
        "discount_share": 0.05,
        "category_breadth": 2,
    }
    return {**base, **overrides}


def test_name_clusters_reads_like_marketing() -> None:
    profiles = pd.DataFrame(
        [
            _profile(customers=100, recency_days=15, frequency=25, monetary=3000, category_breadth=6),
            _profile(
                customers=300,
                recency_days=200,
                frequency=1.05,
                monetary=25,
                online_share=0.95,
                store_share=0.0,
                app_share=0.05,
                discount_share=0.35,
            ),
            _profile(customers=200, recency_days=30, frequency=9, monetary=500, online_share=0.03, store_share=0.95),
            _profile(customers=150, recency_days=400, frequency=2.5, monetary=60, online_share=0.5, app_share=0.1),
        ],
        index=pd.Index([0, 1, 2, 3], name="cluster_id"),
    )
    assert name_clusters(profiles) == {
        0: "frequent omnichannel high spenders",
        1: "discount-driven online one-timers",
        2: "store loyalists",
        3: "lapsed omnichannel low spenders",
    }


def test_name_clusters_disambiguates_namesakes() -> None:
    loyal = {"recency_days": 50, "frequency": 6, "online_share": 0.03, "store_share": 0.95, "app_share": 0.02}
    profiles = pd.DataFrame(
        [
            _profile(customers=300),
            _profile(**loyal, monetary=280),
            _profile(**loyal, monetary=400),
            _profile(**loyal, monetary=330),
        ],
        index=pd.Index([0, 1, 2, 3], name="cluster_id"),
    )
    names = name_clusters(profiles)
    # three namesakes ranked on spend, the first trait that separates them all
    assert names[1] == "store loyalists (lowest spend)"
    assert names[3] == "store loyalists (mid spend)"
    assert names[2] == "store loyalists (highest spend)"
    assert name_clusters(profiles) == names  # deterministic
    # two namesakes with the same spend: the next trait that separates them (frequency) names them
    same_spend = profiles.copy()
    same_spend.loc[3, ["monetary", "frequency"]] = [400, 9]
    names = name_clusters(same_spend)
    assert names[1] == "store loyalists (lower spend)"
    assert {names[2], names[3]} == {"store loyalists (higher spend, less frequent)",
                                    "store loyalists (higher spend, more frequent)"}
    assert names[3].endswith("more frequent)")


def test_name_clusters_never_use_a_number_for_distinct_profiles() -> None:
    # eight one-timer clusters that differ only a little: ranks on spend, then on the next traits
    rng = np.random.default_rng(0)
    rows = [_profile(customers=100 + i, frequency=1.0, monetary=float(m), avg_order_value=float(a),
                     recency_days=float(r))
            for i, (m, a, r) in enumerate(zip(rng.uniform(10, 60, 8), rng.uniform(10, 60, 8),
                                              rng.uniform(30, 300, 8), strict=True))]
    names = name_clusters(pd.DataFrame(rows, index=pd.Index(range(8), name="cluster_id")))
    assert len(set(names.values())) == 8
    assert not any(re.search(r"cluster \d", n) for n in names.values()), names
    assert all("one-timers" in n for n in names.values())


def test_no_spend_cluster_is_named_for_what_it_is() -> None:
    profiles = pd.DataFrame([_profile(customers=400), _profile(customers=60, monetary=0.0, avg_order_value=0.0)],
                            index=pd.Index([0, 1], name="cluster_id"))
    assert name_clusters(profiles)[1] == NO_SPEND_NAME


def test_previous_name_is_kept_while_nearly_true() -> None:
    # online share 0.71 is an "online" cluster; 0.68 is "omnichannel" (two channels above 0.2), but a
    # cluster that was "online loyalists" last week keeps that name for a 3-point drift
    others = [_profile(customers=500, frequency=1.0, monetary=40, online_share=1.0, store_share=0.0, app_share=0.0),
              _profile(customers=300, frequency=3.0, monetary=140, online_share=0.03, store_share=0.95,
                       app_share=0.02)]
    drifted = _profile(customers=350, recency_days=60, frequency=4.0, monetary=120, online_share=0.68,
                       store_share=0.03, app_share=0.29)
    profiles = pd.DataFrame([*others, drifted], index=pd.Index([0, 1, 2], name="cluster_id"))
    fresh = name_clusters(profiles)
    assert "omnichannel" in fresh[2]
    kept = name_clusters(profiles, previous={2: "online loyalists"})
    assert kept[2] == "online loyalists"
    # a real change is renamed: from 0.68 to 0.40 online is not "online" by any nudge
    moved = profiles.copy()
    moved.loc[2, ["online_share", "store_share", "app_share"]] = [0.40, 0.30, 0.30]
    assert name_clusters(moved, previous={2: "online loyalists"})[2] != "online loyalists"


def test_degenerate_inputs() -> None:
    few = pd.DataFrame({c: [1.0, 1.0] for c in FEATURE_COLUMNS})
    model = BehaviourClusterer().fit(few)  # identical rows: one cluster, no silhouette
    assert model.k_ == 1
    assert np.isnan(model.silhouette_)
    assert list(model.labels_) == [0, 0]
    with pytest.raises(ValueError, match="missing feature columns"):
        BehaviourClusterer().fit(few.drop(columns="monetary"))
    with pytest.raises(ValueError, match="NaN"):
        BehaviourClusterer().fit(few.assign(monetary=np.nan))


# -- real data: CDNOW and the demo data ------------------------------------------------------------
# Definitions used below, computed here and not by the code under test:
# * degenerate = fewer than max(10, 1 % of the buyers) customers, or a mean spend of zero;
# * a refit is the weekly retrain's: the later data, k kept unless clearly worse, ids aligned to
#   the earlier centroids, the earlier names passed as the naming's memory (as ml.bundle does);
# * CDNOW: as of 1998-03-31 and refitted as of 1998-04-30; demo: as of 2026-10-24 and 2026-10-31.
ID_NUMBER = re.compile(r"cluster \d")


def _fit_and_name(features: pd.DataFrame, previous: tuple[BehaviourClusterer, dict[int, str]] | None = None
                  ) -> tuple[BehaviourClusterer, pd.DataFrame]:
    model = BehaviourClusterer(random_state=0, previous_k=None if previous is None else previous[0].k_)
    model.fit(features)
    if previous is not None:
        model.align_to(previous[0].centroids_)
    profiles = cluster_profiles(features, model.labels_, previous_names=None if previous is None else previous[1])
    return model, profiles


def _assert_honest(features: pd.DataFrame, profiles: pd.DataFrame, label: str) -> None:
    names = profiles["cluster_name"]
    assert names.is_unique, (label, list(names))
    assert not any(ID_NUMBER.search(n) for n in names), (label, list(names))
    floor = max(10, math.ceil(0.01 * len(features)))
    for _, row in profiles.iterrows():
        degenerate = row["customers"] < floor or row["monetary"] <= 0
        assert not degenerate or row["cluster_name"] == NO_SPEND_NAME, (label, row.to_dict())
    assert profiles["customers"].sum() == len(features)


def _assert_stable(first: pd.DataFrame, second: pd.DataFrame, label: str) -> None:
    a = dict(zip(first["cluster_id"], first["cluster_name"], strict=True))
    b = dict(zip(second["cluster_id"], second["cluster_name"], strict=True))
    assert a == b, (label, a, b)


def test_cdnow_clusters_are_distinct_honest_and_stable() -> None:
    from bench.real_data import cdnow_transactions

    tx = cdnow_transactions()
    march = customer_features(tx, dt.date(1998, 3, 31))
    model, profiles = _fit_and_name(march)
    _assert_honest(march, profiles, "CDNOW 1998-03-31")
    # the cause of the duplicate name: 8 buyers whose orders are all $0 made a cluster of their own;
    # they now sit in a cluster of normal size
    zero = march.index[march["monetary"] <= 0]
    assert len(zero) == 8
    own = pd.Series(model.labels_, index=march.index).loc[zero].unique()
    assert all(profiles.set_index("cluster_id").at[c, "customers"] >= 100 for c in own)
    april = customer_features(tx, dt.date(1998, 4, 30))
    names = dict(zip(profiles["cluster_id"], profiles["cluster_name"], strict=True))
    _, later = _fit_and_name(april, (model, names))
    _assert_honest(april, later, "CDNOW 1998-04-30")
    _assert_stable(profiles, later, "CDNOW 1998-03-31 -> 1998-04-30")


def test_demo_clusters_are_distinct_honest_and_stable(tmp_path: Path) -> None:
    from bench.real_data import DEMO_END, customers_of, demo_transactions

    tx = demo_transactions(tmp_path)
    week = customer_features(tx, DEMO_END - dt.timedelta(days=7), customers_of(tx))
    model, profiles = _fit_and_name(week)
    _assert_honest(week, profiles, "demo 2026-10-24")
    last = customer_features(tx, DEMO_END, customers_of(tx))
    names = dict(zip(profiles["cluster_id"], profiles["cluster_name"], strict=True))
    _, later = _fit_and_name(last, (model, names))
    _assert_honest(last, later, "demo 2026-10-31")
    _assert_stable(profiles, later, "demo 2026-10-24 -> 2026-10-31")


def test_degenerate_clusters_are_merged() -> None:
    # 500 ordinary buyers and 6 outliers far from them: k-means gives the outliers a cluster, which is
    # below max(10, 1 %) and merged into its nearest neighbour
    data = make_customer_base(500, AS_OF, seed=0)
    features = customer_features(data.transactions, AS_OF, data.customers)
    outliers = features.iloc[:6].copy()
    outliers.index = [f"outlier-{i}" for i in range(6)]
    outliers[["monetary", "avg_order_value"]] = 0.0
    both = pd.concat([features, outliers])
    model = BehaviourClusterer(random_state=0, k=8).fit(both)
    sizes = np.bincount(model.labels_)
    assert sizes.min() >= 10
    assert model.k_ + model.merged_clusters_ == 8
