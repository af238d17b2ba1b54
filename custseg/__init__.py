"""custseg: nightly cross-channel customer segmentation, the plumbing around dbt, ``ml/`` and ``expectations/``.

The package reads like the nightly flow (docs/architecture.md):

* ``steps/``: one module per DAG task (prepare, ingest, quality, identity, score, publish, docs);
* ``warehouse/``: DuckDB and PostgreSQL behind one API, and the one SQL-quoting module;
* ``ops/``: run audit, locks, notifications, status, fault drills, row reconciliation;
* ``registry.py``: the model registry; ``cli.py``: the ``custseg`` command; ``rebuild.py``: ``custseg rebuild``;
* ``config.py``, ``sources.py``, ``catalogue.py`` (the channel catalogue), ``dbt.py``, ``errors.py``, ``clock.py``;
* ``demo/``: the demo-data generator and its ground-truth scoring, never on the nightly path.
"""

__version__ = "0.1.0"
