"""`python -m pipelines.ingest [--follow] [--max-messages N]`: the ingest job as `ray job submit` and the cluster's
RayJob / RayCronJob run it (the flags are command.py's, shared with `keyscope ingest`)."""

from __future__ import annotations

from pipelines.entry import job_main, job_parser
from pipelines.ingest.command import DESCRIPTION, add_arguments, run


def main(argv: list[str] | None = None) -> int:
    return job_main(job_parser("python -m pipelines.ingest", DESCRIPTION, add_arguments), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
