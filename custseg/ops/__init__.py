"""What data engineers operate the pipeline with, beside the data itself.

``run_audit`` (the task callbacks writing ``ops.run_audit``, and the DAGs' ``default_args``),
``locks`` (one run per warehouse), ``notify`` (failure summaries and notifications), ``status``
(``custseg status``), ``faults`` (fault drills for tests), ``reconcile`` (every landed row accounted
for), ``dag_runs`` (running the real DAG from a command), ``task_context`` (what they read from Airflow),
``progress`` (the quiet console of ``custseg run`` and ``custseg demo``).
"""
