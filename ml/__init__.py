"""Pure machine-learning layer of custseg: features → estimators → labels.

Nothing here imports Airflow, dbt or a database driver: every function takes pandas
DataFrames and an explicit ``as_of_date`` date, so the package can be unit-tested on its own
and called from any orchestrator. The wall clock is never read; "today" is always the
``as_of_date`` argument.

Modules:
    features    per-customer behavioural features and the BG/NBD summary (frequency, recency, T)
    clustering  log + scale + k-means segmentation with stable ids and readable names
    churn       calibrated "no purchase in the next H days" classifier with baselines
    clv         BG/NBD + Gamma-Gamma lifetime value via pymc-marketing (imported lazily: slow)
    bundle      ``fit_models``: every model fitted as of one date, versioned and picklable
    scoring     ``score_with`` (a fitted bundle) and ``score_customers`` (fit + score)
    drift       population stability index of the main features, training vs today
    approval    the retraining gate: approve a candidate unless worse beyond a tolerance
    synthetic   a seeded synthetic customer base for tests and benchmarks

``ml.clv`` imports PyMC, which takes ~10 s, so this package does not import submodules eagerly.
"""
