"""`keyscope bench practice`: how good the practice texts are, how fast the model writes them, how fast the route
answers.

    keyscope bench practice [--typists 24] [--seed 16] [--dtype float32|bfloat16] [--target-bias B] [--compile]
                            [--skip-quality] [--skip-throughput] [--skip-route]

Quality (in this process, no stack): simulated typists with known weak keys and pairs (devstack/simulate.py traits:
their error-prone keys and slow pairs, worst first) become practice needs (app/practice/signature.py); for each,
the texts the language model writes (the kept ones, as served), the same with the target bias off, the rule-based
drill, and a random run of common words, all scored by app/practice/score.py on the typist's targets: target share
(words holding a target), lift (target units per character against ordinary English), dictionary-word share,
distinct-word share, and the share of the model's candidates that passed.

Throughput: generated tokens per second of `PracticeWriter.write` at several batch shapes (prompts x samples per
prompt) in the writer's default dtype, then one lever at a time at one shape: float32, no KV cache, and with
`--compile` torch.compile (its first call compiles for minutes); torch uses every core of the machine.

Route (starts the stack, live generation off so misses stay misses): GET /v1/users/{id}/practice-text?words=30 at
a steady offered rate (open loop: request i sent i/rate s after the start, latency from that moment) for hits
(typists whose signature has texts written) and misses (each typist a signature nothing was written for: the
rule-based drill), first misses of their signature (a ClickHouse lookup) and then the same again (Redis only).
The typists' insights are put in the read cache directly; the route's work is the same.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import string
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.config import Settings
from app.practice.words import ordinary_rate
from app.text_table import print_table

# Bands of a unit's share of the characters of ordinary English: 'q' and most pairs are rare, 'e' and 't' common.
RATE_BANDS = (("under 1 % of characters", 0.0, 0.01), ("1-4 %", 0.01, 0.04), ("4 % and more", 0.04, 1.0))
FIRST_USER = 82_000_000  # typists this benchmark caches insights for (bench/predict.py uses 81,000,000…)
WORDS = 30
SHAPES = ((1, 1), (4, 4), (8, 4), (16, 4))  # (prompts, samples per prompt)
FLOAT32_SHAPE = (8, 4)  # the shape the other levers are compared at
TOKENS = 48


def _insights(layout: str, wpm: float, keys: list[str], pairs: list[str]) -> dict[str, Any]:
    """The part of a typist's insights the practice text reads (app/practice/drills.py drill_targets)."""
    return {
        "layout": layout,
        "recent": {"wpm": wpm},
        "mean_wpm": wpm,
        "recommendations": [{"priority": 1, "targets": {"keys": keys, "pairs": pairs}}],
    }


def simulated_insights(typists: int, seed: int) -> list[dict[str, Any]]:
    """Insights of simulated typists whose weak keys and pairs are known: their traits, worst first."""
    from devstack.simulate import make_profiles

    out = []
    for profile in make_profiles(typists, seed, first_user_id=1, traits=True):
        keys = sorted(profile.key_error_factors, key=lambda k: -profile.key_error_factors[k])
        pairs = sorted(profile.pair_factors, key=lambda p: -profile.pair_factors[p])
        out.append(_insights(profile.layout, profile.wpm, keys, pairs))
    return out


@dataclass
class Quality:
    what: str
    scores: list[Any] = field(default_factory=list)  # TextScore
    candidates: int = 0
    passed: int = 0
    unit_lifts: list[tuple[str, float]] = field(default_factory=list)  # (unit, its lift in a served text)

    def row(self) -> list[str]:
        if not self.scores:
            return [self.what, "0", "-", "-", "-", "-", "-", "-"]
        lifts = [s.lift for s in self.scores]
        passed = f"{self.passed / self.candidates:.0%}" if self.candidates else "-"
        return [
            self.what,
            str(len(self.scores)),
            f"{statistics.mean(s.target_share for s in self.scores):.0%}",
            f"{statistics.median(lifts):.1f}x",
            f"{sum(x >= 3 for x in lifts) / len(lifts):.0%}",
            f"{statistics.mean(s.dictionary_share for s in self.scores):.1%}",
            f"{statistics.mean(s.distinct_share for s in self.scores):.0%}",
            passed,
        ]


def measure_quality(settings: Settings, typists: int, seed: int, dtype: str | None = None,
                    target_bias: float | None = None, progress=print) -> tuple[list[Quality], str]:
    from app.practice.drills import build_drill, drill_targets, practice_words
    from app.practice.generate import write_texts
    from app.practice.lm import PracticeWriter
    from app.practice.model_files import model_folder
    from app.practice.score import score_passage, score_text
    from app.practice.serving import cut_words
    from app.practice.signature import needs_from_insights
    from app.practice.words import unit_lifts

    people = simulated_insights(typists, seed)
    needs = [needs_from_insights(i) for i in people]
    signatures = sorted({n.signature for n in needs})
    import torch

    writer = PracticeWriter(model_folder(settings), dtype=getattr(torch, dtype) if dtype else None)
    biased = "language model" if target_bias is None else f"language model, target bias {target_bias:g}"
    models = {biased: target_bias, "language model, no target bias": 0.0}
    results = {name: Quality(name) for name in models}
    first_text: dict[tuple[str, str], str] = {}
    for name, bias in models.items():
        for start in range(0, len(signatures), 8):
            batch = signatures[start : start + 8]
            kwargs = {} if bias is None else {"target_bias": bias}
            texts, stats = write_texts(writer, batch, seed=seed, **kwargs)
            results[name].candidates += stats.candidates
            results[name].passed += stats.passed
            for text in texts:
                first_text.setdefault((name, text.signature), text.text)  # best first: what is served first
            progress(f"{name}: {start + len(batch)}/{len(signatures)} signatures, {stats.tokens_per_s:.0f} tokens/s")
    rules, common = Quality("rule-based drill"), Quality("random common words")
    vocabulary = list(practice_words()[:1000])
    rng = random.Random(seed)
    for person, need in zip(people, needs):
        for name in models:
            text = first_text.get((name, need.signature))
            if text is not None:
                results[name].scores.append(score_text(text, need))
                results[name].unit_lifts.extend(unit_lifts(text, need.units).items())
        keys, pairs = drill_targets(person)
        drill = cut_words(build_drill(keys, pairs, length_chars=WORDS * 6, seed=rng.randrange(2**31),
                                      layout=need.layout), WORDS)
        rules.scores.append(score_passage(drill, need))
        rules.unit_lifts.extend(unit_lifts(drill, need.units).items())
        words = " ".join(rng.choice(vocabulary) for _ in range(WORDS))
        common.scores.append(score_passage(words, need))
        common.unit_lifts.extend(unit_lifts(words, need.units).items())
    return [*results.values(), rules, common], str(writer.dtype).removeprefix("torch.")


def print_quality(rows: list[Quality], typists: int, dtype: str) -> None:
    print(f"\npractice-text quality, {typists} simulated typists (their own weak keys and pairs), model in {dtype}")
    header = ["text", "texts", "target share", "lift (median)", "lift >= 3x", "dictionary words", "distinct words",
              "candidates passed"]
    print_table([header, *(q.row() for q in rows)], numeric_from=1)
    print("\nlift per target unit (median), by how common the unit is in ordinary English")
    table = [["how common", "units", *(q.what for q in rows)]]
    for label, low, high in RATE_BANDS:
        lifts = {q.what: [x for unit, x in q.unit_lifts if low <= ordinary_rate(unit) < high] for q in rows}
        table.append([label, str(len(lifts[rows[-1].what])),
                      *(f"{statistics.median(v):.1f}x" if v else "-" for v in lifts.values())])
    print_table(table, numeric_from=1)


# -- throughput ----------------------------------------------------------------------------------------------------


def measure_throughput(settings: Settings, seed: int, compile_model: bool = False, progress=print) -> list[list[str]]:
    """Tokens/s at each batch shape in the writer's default dtype, then the levers one at a time: float32, no KV
    cache, and (with `compile_model`) torch.compile."""
    import torch

    from app.practice.lm import PracticeWriter, WriteRequest
    from app.practice.model_files import model_folder
    from app.practice.signature import PracticeNeeds

    units = [("q",), ("ed", "th"), ("b", "v"), ("ou",), ("k", "p", "w"), ()]
    rows = [["dtype", "variant", "prompts x samples", "sequences", "tokens", "seconds", "tokens/s"]]

    def measure(writer, variant: str, prompts: int, samples: int, **options: object) -> None:
        requests = [WriteRequest(PracticeNeeds(units=units[i % len(units)]), seed + i) for i in range(prompts)]
        _, stats = writer.write(requests, candidates=samples, max_new_tokens=TOKENS, seed=seed, **options)
        dtype = str(writer.dtype).removeprefix("torch.")
        rows.append([dtype, variant, f"{prompts} x {samples}", str(prompts * samples), str(stats.new_tokens),
                     f"{stats.seconds:.1f}", f"{stats.tokens_per_s:.1f}"])
        progress(f"{dtype} {variant} {prompts}x{samples}: {stats.tokens_per_s:.1f} tokens/s")

    writer = PracticeWriter(model_folder(settings))
    writer.write([WriteRequest(PracticeNeeds(), 0)], candidates=1, max_new_tokens=4)  # warm-up
    for prompts, samples in SHAPES:
        measure(writer, "default", prompts, samples)
    measure(writer, "no KV cache", 4, 4, use_cache=False)
    if compile_model:
        # Compiled for the measured shape by a first call of that shape (other shapes would compile again).
        started = time.perf_counter()
        writer.model.forward = torch.compile(writer.model.forward, dynamic=True)
        prompts, samples = FLOAT32_SHAPE
        warm_up = [WriteRequest(PracticeNeeds(units=units[i % len(units)]), seed + i) for i in range(prompts)]
        writer.write(warm_up, candidates=samples, max_new_tokens=TOKENS, seed=seed)
        measure(writer, f"torch.compile (first call {time.perf_counter() - started:.0f} s)", prompts, samples)
    if writer.dtype != torch.float32:
        del writer
        writer = PracticeWriter(model_folder(settings), dtype=torch.float32)
        writer.write([WriteRequest(PracticeNeeds(), 0)], candidates=1, max_new_tokens=4)
        measure(writer, "default", *FLOAT32_SHAPE)
    return rows


def print_throughput(rows: list[list[str]]) -> None:
    import torch

    threads = torch.get_num_threads()
    print(f"\ngeneration throughput ({TOKENS} new tokens at most per sequence, {threads} torch threads)")
    print_table(rows, numeric_from=1)


# -- the route -----------------------------------------------------------------------------------------------------


@dataclass
class RouteTiming:
    what: str
    expected: str  # the generator the answers should name
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    unexpected: int = 0

    def row(self, seconds: float) -> list[str]:
        if not self.latencies_s:
            return [self.what, "0", "-", "-", "-", "-", str(self.errors), str(self.unexpected)]
        p50, p95, p99 = (float(np.percentile(self.latencies_s, q)) * 1000 for q in (50, 95, 99))
        return [self.what, str(len(self.latencies_s)), f"{len(self.latencies_s) / seconds:.0f}", f"{p50:.1f}",
                f"{p95:.1f}", f"{p99:.1f}", str(self.errors), str(self.unexpected)]


def seed_route(settings: Settings, hits: int, misses: int, seed: int, progress=print) -> tuple[list[int], list[int]]:
    """Cache insights for hit and miss typists; write texts for the hit typists' signatures. Returns the ids."""
    import redis

    from app.cache import encode_read, generations, put_reads
    from app.practice.generate import write_texts
    from app.practice.lm import PracticeWriter
    from app.practice.model_files import model_folder
    from app.practice.signature import needs_from_insights
    from app.practice.texts import TEXTS_PREFIX, TextCache

    hit_sets = [["q"], ["z", "x"], ["b", "v", "y"]]
    letters = [c for c in string.ascii_lowercase if c not in "qzxbvy"]
    miss_sets = [list(combo) for combo in itertools.combinations(letters, 3)]
    random.Random(seed).shuffle(miss_sets)
    cache = TextCache(settings)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        hit_insights = [_insights("qwerty", 50.0, hit_sets[i % len(hit_sets)], []) for i in range(hits)]
        hit_sigs = sorted({needs_from_insights(i).signature for i in hit_insights})
        if any(n < 4 for n in cache.counts(hit_sigs).values()):
            progress(f"writing texts for {len(hit_sigs)} hit signatures")
            texts, _ = write_texts(PracticeWriter(model_folder(settings)), hit_sigs, seed=seed)
            cache.put(texts)
        miss_insights = [_insights("qwerty", 50.0, miss_sets[i], []) for i in range(misses)]
        miss_sigs = [needs_from_insights(i).signature for i in miss_insights]
        stored = cache.counts(miss_sigs)
        if any(stored.values()):
            raise RuntimeError(f"miss signatures have texts: {[s for s, n in stored.items() if n]}")
        hit_ids = list(range(FIRST_USER, FIRST_USER + hits))
        miss_ids = list(range(FIRST_USER + hits, FIRST_USER + hits + misses))
        for ids, bodies in ((hit_ids, hit_insights), (miss_ids, miss_insights)):
            gens = generations(client, ids)
            for user_id, generation, body in zip(ids, gens, bodies):
                put_reads(client, user_id, generation, {"insights": encode_read({**body, "user_id": user_id})}, 3600)
        client.delete(*(TEXTS_PREFIX + s for s in miss_sigs))
        return hit_ids, miss_ids
    finally:
        client.close()
        cache.close()


async def offered_load(settings: Settings, timing: RouteTiming, user_ids: list[int], rate: float,
                       seconds: float) -> None:
    """GET practice-text for `user_ids` in turn, request i at start + i/rate (open loop)."""
    import httpx

    from app.api_client import api_url, service_headers

    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=api_url(settings), headers=service_headers(settings), timeout=30,
                                 limits=limits) as client:
        start = time.perf_counter() + 0.1

        async def one(i: int) -> None:
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            try:
                response = await client.get(f"/v1/users/{user_ids[i % len(user_ids)]}/practice-text",
                                            params={"words": WORDS})
            except httpx.HTTPError:
                timing.errors += 1
                return
            if response.status_code != 200:
                timing.errors += 1
                return
            timing.latencies_s.append(time.perf_counter() - scheduled)
            if response.json().get("generator") != timing.expected:
                timing.unexpected += 1

        await asyncio.gather(*(one(i) for i in range(int(rate * seconds))))


def measure_route(settings: Settings, rate: float, seconds: float, seed: int, progress=print) -> list[list[str]]:
    hits, misses = seed_route(settings, 50, int(rate * seconds), seed, progress)
    # A warm-up round of hits: replicas and connections up.
    asyncio.run(offered_load(settings, RouteTiming("warm-up", "lm"), hits, rate, 2))
    rows = [["requests", "answered", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "other generator"]]
    # Misses twice: a signature's first miss reads ClickHouse; later ones find it remembered as empty in Redis.
    for what, ids, expected in (
        ("hits (lm)", hits, "lm"),
        ("misses, first of their signature (rules)", misses, "rules"),
        ("misses, signature missed before (rules)", misses, "rules"),
    ):
        timing = RouteTiming(what, expected)
        asyncio.run(offered_load(settings, timing, ids, rate, seconds))
        rows.append(timing.row(seconds))
        progress(f"{what}: done")
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--typists", type=int, default=24, help="simulated typists for the quality table")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--rate", type=float, default=50.0, help="offered requests/s on the route")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of load per kind of request")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                        help="the model's weights and activations for the quality table (default: the writer's, "
                        "bfloat16 on CPUs that compute it natively)")
    parser.add_argument("--target-bias", type=float, default=None,
                        help="the logit bonus of target tokens for the quality table (default: the writer's, 2.0)")
    parser.add_argument("--compile", action="store_true",
                        help="add a torch.compile row to the throughput table (its first call compiles for minutes)")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-route", action="store_true", help="no stack: quality and throughput only")


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    if not args.skip_quality:
        rows, dtype = measure_quality(settings, args.typists, args.seed, args.dtype, args.target_bias)
        print_quality(rows, args.typists, dtype)
    if not args.skip_throughput:
        print_throughput(measure_throughput(settings, args.seed, args.compile))
    if not args.skip_route:
        from devstack.stack import LocalStack

        settings = settings.with_overrides(practice_live_generation=False)
        LocalStack(settings).up(progress=print)
        rows = measure_route(settings, args.rate, args.seconds, args.seed)
        print(f"\nGET /v1/users/{{id}}/practice-text?words={WORDS}, {args.rate:.0f} req/s offered for "
              f"{args.seconds:.0f} s each")
        print_table(rows, numeric_from=1)
    return 0
