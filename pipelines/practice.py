"""Pre-generation of practice texts: write language-model texts for the signatures typists need, ahead of their
requests, so the practice deployment serves them from cache (app/practice/texts.py).

    python -m pipelines.practice            # daily as a RayCronJob (cluster/prod/app/raycronjob-practice.yaml)
    keyscope practice generate              # the same on the local stack

Steps, in one direction:
1. demand: the signatures requests missed (`keyscope:practice:wanted`), those typists moved to after an ingest pass
   (`keyscope:practice:changed`), those of typists with tests ingested in the last --days (from their precomputed
   insights, `user_insights`), and the general signature; or exactly the --signature ones;
2. plan: those with fewer than --texts-per-signature texts in ClickHouse, most typists first, at most
   --max-signatures (`choose_signatures`, pure);
3. write: Ray Data batch inference, `map_batches` over a pool of --writers actors that each load the model once
   (one GPU each when the cluster has GPUs), --batch-size signatures per generate call;
4. store: each finished batch into ClickHouse and the Redis hot set, then its signatures off the queues, so a run
   cut short keeps what it wrote.

A signature none of whose candidates pass gets nothing and stays queued; its typists keep the rule-based drills.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from app.config import Settings
from app.practice.signature import GENERAL_NEEDS, SignatureError, needs_from_insights, parse_signature
from app.practice.texts import CHANGED_KEY, MAX_QUEUED, WANTED_KEY, PracticeText, TextCache, claim_key
from pipelines.entry import job_main, job_parser

log = logging.getLogger("keyscope.practice")

DAYS = 7
TEXTS_PER_SIGNATURE = 8
MAX_SIGNATURES = 200
BATCH_SIGNATURES = 8
WRITERS = 1
WRITER_CPUS = 2
CLAIM_TTL_S = 6 * 3600  # the run's claims on its signatures lapse on their own if it is killed
INSIGHTS_PAGE = 1_000  # typists whose insights are read per query: bounds the driver's memory, not the work
# What each writer returns per signature: its texts (PracticeText JSON) and the generation's statistics. The
# statistics belong to a generate call of several signatures, so they sit on its first signature and are 0 on the
# others: sums over the rows are the run's totals.
_WRITTEN = pa.schema(
    [
        ("signature", pa.string()),
        ("texts", pa.list_(pa.string())),
        ("candidates", pa.int64()),
        ("new_tokens", pa.int64()),
        ("generate_s", pa.float64()),
    ]
)


@dataclass(frozen=True)
class WantedSignature:
    """A signature the run writes texts for: how many it has, how many it lacks, how many active typists have it."""

    signature: str
    stored: int
    missing: int
    typists: int


def choose_signatures(
    candidates: Sequence[str],
    typists: Mapping[str, int],
    stored: Mapping[str, int],
    *,
    per_signature: int,
    limit: int,
) -> list[WantedSignature]:
    """The signatures to write for: those of `candidates` with fewer than `per_signature` stored texts, most typists
    first (ties keep the candidates' order: queue age), each once, at most `limit`."""
    wanted: list[WantedSignature] = []
    seen: set[str] = set()
    for signature in candidates:
        if signature in seen:
            continue
        seen.add(signature)
        have = stored.get(signature, 0)
        if have < per_signature:
            wanted.append(WantedSignature(signature, have, per_signature - have, typists.get(signature, 0)))
    wanted.sort(key=lambda w: -w.typists)  # stable: equal demand keeps queue order
    return wanted[:limit]


# -- 1. demand ------------------------------------------------------------------------------------------------------


def active_typists(client: Any, days: int) -> list[int]:
    """Typists with tests ingested in the last `days` days."""
    rows = client.query(
        "SELECT DISTINCT user_id FROM test_results WHERE ingested_at >= now64(3) - toIntervalDay({d:UInt32}) "
        "ORDER BY user_id",
        parameters={"d": days},
    ).result_rows
    return [int(row[0]) for row in rows]


def typist_signatures(client: Any, user_ids: Sequence[int]) -> Counter[str]:
    """How many of these typists have each signature, from their latest precomputed insights (typists without a
    row count for the general signature: that is what they are served)."""
    counts: Counter[str] = Counter()
    for start in range(0, len(user_ids), INSIGHTS_PAGE):
        page = list(user_ids[start : start + INSIGHTS_PAGE])
        rows = client.query(
            "SELECT user_id, argMax(insights, computed_at) FROM user_insights WHERE user_id IN {u:Array(UInt64)} "
            "GROUP BY user_id",
            parameters={"u": page},
        ).result_rows
        for _, raw in rows:
            try:
                insights = json.loads(raw)
            except ValueError:
                insights = None
            counts[needs_from_insights(insights if isinstance(insights, dict) else None).signature] += 1
        counts[GENERAL_NEEDS.signature] += len(page) - len(rows)
    return counts


def queued_signatures(cache: TextCache) -> tuple[list[str], list[str]]:
    """The queued signatures (wanted first, then changed; oldest first) and the malformed ones among them."""
    valid: list[str] = []
    malformed: list[str] = []
    for key in (WANTED_KEY, CHANGED_KEY):
        for signature in cache.queued(key, limit=MAX_QUEUED):
            try:
                parse_signature(signature)
            except SignatureError:
                malformed.append(signature)
            else:
                valid.append(signature)
    return valid, malformed


# -- 3. write -------------------------------------------------------------------------------------------------------


class PracticeTextWriter:
    """A Ray Data actor: loads the language model once, then writes the texts of each batch of signatures."""

    def __init__(self, folder: str, candidates: int, prompts: int, max_new_tokens: int, threads: int = 0) -> None:
        from app.practice.lm import PracticeWriter

        if threads:  # Ray sets OMP_NUM_THREADS to the actor's CPUs; say it to torch as well
            import torch

            torch.set_num_threads(threads)
        self.writer = PracticeWriter(Path(folder))
        self.candidates = candidates
        self.prompts = prompts
        self.max_new_tokens = max_new_tokens

    def __call__(self, batch: pa.Table) -> pa.Table:
        from app.practice.generate import write_texts

        rows = batch.to_pylist()
        written: dict[str, list[str]] = {row["signature"]: [] for row in rows}
        stats: dict[str, tuple[int, int, float]] = {}
        # One generate call per seed (rows of one seed share the sampling); almost always a single call.
        for seed in sorted({row["seed"] for row in rows}):
            group = [row for row in rows if row["seed"] == seed]
            texts, call = write_texts(
                self.writer,
                [row["signature"] for row in group],
                seed=seed,
                prompts=self.prompts,
                candidates=self.candidates,
                keep=max(row["missing"] for row in group),
                max_new_tokens=self.max_new_tokens,
            )
            missing = {row["signature"]: row["missing"] for row in group}
            for text in texts:  # best first per signature
                if len(written[text.signature]) < missing[text.signature]:
                    written[text.signature].append(text.to_json())
            stats[group[0]["signature"]] = (call.candidates, call.new_tokens, call.seconds)
        return pa.table(
            {
                "signature": list(written),
                "texts": list(written.values()),
                "candidates": [stats.get(s, (0, 0, 0.0))[0] for s in written],
                "new_tokens": [stats.get(s, (0, 0, 0.0))[1] for s in written],
                "generate_s": [stats.get(s, (0, 0, 0.0))[2] for s in written],
            },
            schema=_WRITTEN,
        )


def write_batches(
    settings: Settings, wanted: Sequence[WantedSignature], options: argparse.Namespace
) -> Iterator[pa.Table]:
    """The writers' output, a block at a time as batches finish (Ray Data batch inference over an actor pool)."""
    import ray

    from app.practice.model_files import model_folder

    if not ray.is_initialized():
        ray.init(address=settings.ray_address, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the job logs its own progress per batch
    gpus = ray.cluster_resources().get("GPU", 0) > 0
    # The seed moves on with the texts a signature has, so a rerun for one whose first texts failed samples anew.
    items = [{"signature": w.signature, "seed": options.seed + w.stored, "missing": w.missing} for w in wanted]
    written = ray.data.from_items(items).map_batches(
        PracticeTextWriter,
        fn_constructor_kwargs={
            "folder": str(model_folder(settings)),
            "candidates": options.candidates,
            "prompts": options.prompts,
            "max_new_tokens": options.max_new_tokens,
            "threads": 0 if gpus else options.writer_cpus,
        },
        batch_size=options.batch_size,
        batch_format="pyarrow",
        concurrency=options.writers,
        **({"num_gpus": 1} if gpus else {"num_cpus": options.writer_cpus}),
    )
    where = "GPU" if gpus else "CPU"
    log.info("writing texts for %d signatures: %d writer(s) on %s", len(wanted), options.writers, where)
    yield from written.iter_batches(batch_size=None, batch_format="pyarrow")


# -- the run --------------------------------------------------------------------------------------------------------


@dataclass
class GenerationReport:
    considered: int = 0  # signatures collected from the queues, active typists and the general one (or --signature)
    wanted: int = 0  # of those, with too few texts (after --max-signatures)
    written: int = 0  # signatures that got at least one text
    failed: int = 0  # signatures none of whose candidates passed
    texts: int = 0
    candidates: int = 0
    new_tokens: int = 0
    generate_s: float = 0.0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.generate_s if self.generate_s > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.considered} signatures considered, {self.wanted} short of texts: {self.written} written, "
            f"{self.failed} failed (no passing candidate); {self.texts} texts from {self.candidates} candidates, "
            f"{self.new_tokens} tokens generated ({self.tokens_per_s:,.0f} tokens/s while generating) "
            f"in {self.seconds:.1f} s"
        )


def collect_candidates(options: argparse.Namespace, client: Any, cache: TextCache) -> tuple[list[str], Counter[str]]:
    """Step 1: the candidate signatures in priority order and how many active typists have each."""
    if options.signature:
        return list(options.signature), Counter()
    queued, malformed = queued_signatures(cache)
    if malformed:
        log.warning("dropping %d malformed queued signatures, e.g. %r", len(malformed), malformed[0])
        if not options.dry_run:
            cache.done(malformed)
    typists = typist_signatures(client, active_typists(client, options.days))
    active = sorted(typists, key=lambda s: (-typists[s], s))
    return [*queued, *active, GENERAL_NEEDS.signature], typists


def plan(options: argparse.Namespace, client: Any, cache: TextCache) -> tuple[int, list[WantedSignature]]:
    """Steps 1 and 2: how many signatures were considered, and those to write for."""
    candidates, typists = collect_candidates(options, client, cache)
    distinct = list(dict.fromkeys(candidates))
    stored = cache.counts(distinct)
    wanted = choose_signatures(
        distinct, typists, stored, per_signature=options.texts_per_signature, limit=options.max_signatures
    )
    # Queued signatures that already have their texts (written since they were queued) leave the queues.
    full = [s for s in distinct if stored.get(s, 0) >= options.texts_per_signature]
    if full and not options.dry_run:
        cache.done(full)
    return len(distinct), wanted


def plan_lines(wanted: Iterable[WantedSignature]) -> list[str]:
    """What --dry-run prints: one line per signature it would write for."""
    return [f"{w.signature}  stored {w.stored}, writes up to {w.missing}, active typists {w.typists}" for w in wanted]


def run_generation(settings: Settings, options: argparse.Namespace) -> GenerationReport:
    """One run as the options ask (see the module docstring); with `dry_run`, plans and prints, writes nothing."""
    from app.clickhouse.migrate import apply_migrations

    started = time.perf_counter()
    report = GenerationReport()
    cache = TextCache(settings)
    client = cache.clickhouse()  # one ClickHouse connection for the run
    try:
        apply_migrations(client)
        report.considered, wanted = plan(options, client, cache)
        report.wanted = len(wanted)
        if options.dry_run:
            for line in plan_lines(wanted) or ["no signature is short of texts"]:
                print(line)
        elif wanted:
            _write(settings, options, wanted, cache, report, started)
    finally:
        cache.close()
    report.seconds = time.perf_counter() - started
    log.info("practice texts: %s", report.line())
    return report


def _write(
    settings: Settings,
    options: argparse.Namespace,
    wanted: list[WantedSignature],
    cache: TextCache,
    report: GenerationReport,
    started: float,
) -> None:
    """Steps 3 and 4: write, and store each finished block as it comes. The signatures are claimed for the run, so
    the practice deployment's background writer leaves them alone meanwhile; one it is writing now is skipped."""
    claimed = [w for w in wanted if cache.redis.set(claim_key(w.signature), "job", nx=True, ex=CLAIM_TTL_S)]
    busy = len(wanted) - len(claimed)
    if busy:
        log.info("%d signatures are being written by the practice deployment; skipped", busy)
    report.wanted = len(claimed)
    try:
        _write_claimed(settings, options, claimed, cache, report, started)
    finally:
        if claimed:
            cache.redis.delete(*(claim_key(w.signature) for w in claimed))


def _write_claimed(
    settings: Settings,
    options: argparse.Namespace,
    wanted: list[WantedSignature],
    cache: TextCache,
    report: GenerationReport,
    started: float,
) -> None:
    if not wanted:
        return
    for block in write_batches(settings, wanted, options):
        texts: list[PracticeText] = []
        done: list[str] = []
        for row in block.to_pylist():
            found = [PracticeText.from_json(raw) for raw in row["texts"]]
            texts.extend(found)
            if found:
                done.append(row["signature"])
            else:
                report.failed += 1
                log.info("no passing candidate for %s; it stays queued", row["signature"])
            report.candidates += row["candidates"]
            report.new_tokens += row["new_tokens"]
            report.generate_s += row["generate_s"]
        cache.put(texts)  # ClickHouse, then the hot set
        cache.done(done)  # only once stored
        report.written += len(done)
        report.texts += len(texts)
        finished = report.written + report.failed
        log.info(
            "%d/%d signatures (%d texts, %.0f s)", finished, report.wanted, report.texts, time.perf_counter() - started
        )


# -- the command ----------------------------------------------------------------------------------------------------

DESCRIPTION = (
    "Write practice texts with the language model for the signatures that have too few: those requests missed, "
    "those typists moved to, those of typists active recently, and the general one (Ray Data batch inference)."
)


def _at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number ≥ {minimum}, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be ≥ {minimum}, not {value}")
        return value

    return parse


def _signature(text: str) -> str:
    """--signature: a well-formed practice signature (argparse names the flag in its error and exits 2)."""
    try:
        return parse_signature(text).signature
    except SignatureError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The job's flags, for `python -m pipelines.practice` and `keyscope practice generate` alike."""
    from app.practice.generate import PROMPTS
    from app.practice.lm import CANDIDATES, MAX_NEW_TOKENS

    parser.add_argument(
        "--signature", action="append", type=_signature, metavar="S",
        help="write for exactly this signature (repeatable), e.g. qwerty-en-s2-ed.q.th; default: the queues, "
        "the typists active in the last --days and the general signature",
    )
    parser.add_argument(
        "--days", type=_at_least(1), default=DAYS, help=f"typists active in this many days (default {DAYS})"
    )
    parser.add_argument(
        "--texts-per-signature", type=_at_least(1), default=TEXTS_PER_SIGNATURE, metavar="N",
        help=f"write for signatures with fewer texts than this, up to it (default {TEXTS_PER_SIGNATURE})",
    )
    parser.add_argument(
        "--max-signatures", type=_at_least(1), default=MAX_SIGNATURES, metavar="N",
        help=f"at most this many signatures a run, most typists first (default {MAX_SIGNATURES})",
    )
    parser.add_argument(
        "--batch-size", type=_at_least(1), default=BATCH_SIGNATURES, metavar="N",
        help=f"signatures per generate call (default {BATCH_SIGNATURES})",
    )
    parser.add_argument(
        "--writers", type=_at_least(1), default=WRITERS, metavar="N",
        help=f"writer actors, each holding the model (one GPU each when the cluster has GPUs; default {WRITERS})",
    )
    parser.add_argument(
        "--writer-cpus", type=_at_least(1), default=WRITER_CPUS, metavar="N",
        help=f"CPUs per writer actor where the cluster has no GPU, and the torch threads it uses (default "
        f"{WRITER_CPUS}: Ray would otherwise give a 1-CPU actor one torch thread)",
    )
    parser.add_argument(
        "--candidates", type=_at_least(1), default=CANDIDATES, metavar="N",
        help=f"samples per prompt (default {CANDIDATES})",
    )
    parser.add_argument(
        "--prompts", type=_at_least(1), default=PROMPTS, metavar="N",
        help=f"prompts per signature, each with other target words (default {PROMPTS})",
    )
    parser.add_argument(
        "--max-new-tokens", type=_at_least(8), default=MAX_NEW_TOKENS, metavar="N",
        help=f"token budget of each sample (default {MAX_NEW_TOKENS})",
    )
    parser.add_argument("--seed", type=_at_least(0), default=0, help="sampling seed (default 0)")
    parser.add_argument("--dry-run", action="store_true", help="list the signatures it would write for and exit")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """One run as the flags ask; prints its summary line."""
    print(run_generation(settings, args).line())
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main(job_parser("python -m pipelines.practice", DESCRIPTION, add_arguments), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
