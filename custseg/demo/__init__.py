"""The demo: a seeded generator of cross-channel landing files with planted ground truth
(``generate``), and the scoring of the pipeline's identities and clusters against it (``truth``).

Tests, the benchmark and ``custseg demo`` use it; the nightly path never imports it.
"""
