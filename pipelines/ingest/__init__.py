"""The ingest job (Kafka → decode and analyse → ClickHouse → offsets) as a package of its steps, in the order a pass
runs them: plan, recover, read (with analyse and readers), write, deletions, offsets; job.py runs the passes,
command.py is the command (`python -m pipelines.ingest`, `keyscope ingest`). What outside code uses is here."""

from pipelines.ingest.command import DESCRIPTION, add_arguments, run
from pipelines.ingest.job import Ingestor, StopRequest, ingest_once, run_ingest
from pipelines.ingest.report import IngestReport

__all__ = [
    "DESCRIPTION",
    "IngestReport", "Ingestor", "StopRequest", "add_arguments", "ingest_once", "run", "run_ingest"]
