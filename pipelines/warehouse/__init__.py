"""The warehouse job: keyscope's data exported as daily Parquet for BigQuery / Snowflake, kept in line with the
stores, and the cohort example over it. Its steps, each a module: files (the root and its file operations), datasets
(schemas and queries), export (one day), retention and erasure (upkeep of exported days), job (a run), cohorts (the
example report), command (the command's flags and dispatch). This face exposes the command only.
"""

from pipelines.warehouse.command import DESCRIPTION, add_arguments, run

__all__ = ["DESCRIPTION", "add_arguments", "run"]
