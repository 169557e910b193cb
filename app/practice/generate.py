"""Writing texts for signatures: the step the pre-generation job (pipelines/practice.py) and the practice
deployment's background writer (serve/practice.py) share.

Each signature gets PROMPTS prompts (different target words: seeds seed, seed+1, …) of CANDIDATES samples each, in
one batched generation with every other signature of the call; the best passing candidates are kept, at most
`keep` per signature. A signature none of whose candidates pass gets nothing, and keeps being served rule-based
drills until a later run does better.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.practice.lm import CANDIDATES, MAX_NEW_TOKENS, TARGET_BIAS, PracticeWriter, WriteRequest, WriteStats, best
from app.practice.signature import parse_signature
from app.practice.texts import PracticeText

PROMPTS = 2
KEEP = 4


def write_texts(
    writer: PracticeWriter,
    signatures: Sequence[str],
    *,
    seed: int = 0,
    prompts: int = PROMPTS,
    candidates: int = CANDIDATES,
    keep: int = KEEP,
    max_new_tokens: int = MAX_NEW_TOKENS,
    target_bias: float = TARGET_BIAS,
) -> tuple[list[PracticeText], WriteStats]:
    """Texts for each signature (at most `keep`, best first) and the generation's statistics."""
    requests = [WriteRequest(parse_signature(s), seed + i) for s in signatures for i in range(prompts)]
    results, stats = writer.write(
        requests, candidates=candidates, max_new_tokens=max_new_tokens, seed=seed, target_bias=target_bias
    )
    texts: list[PracticeText] = []
    for index, signature in enumerate(signatures):
        pool = [c for row in results[index * prompts : (index + 1) * prompts] for c in row]
        for chosen in best(pool, keep):
            texts.append(
                PracticeText(
                    signature=signature,
                    text=chosen.text,
                    targets=chosen.request.needs.units,
                    prompt_words=chosen.prompt_words,
                    score=chosen.score.as_dict(),
                    model=writer.name,
                    seed=chosen.request.seed,
                )
            )
    return texts, stats
