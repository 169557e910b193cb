"""A/B experiments: definitions, deterministic assignment, exposures in ClickHouse, the report (docs/experiments.md).

definition.py (what an experiment is), assignment.py (hash → variant), store.py (ClickHouse), exposures.py (the
batched recorder), runtime.py (the layer inside a serving process), outcomes.py (each exposed user's later tests),
stats.py (Welch interval, sample-ratio check), report.py (the report). The GDPR store of the exposures is
app/user_data.py `ExposureStore`.
"""
