"""Writes practice texts with the language model: prompts built from each typist's target words, batched sampling
with a bias toward the target units, every candidate cleaned and scored, the best that passes kept.

What raises throughput on a CPU (measured by `keyscope bench practice`, docs/benchmarks.md): many prompts in one
`generate` call (padding on the left), several samples per prompt (`num_return_sequences`) sharing the prompt's
computation, and the KV cache (transformers' default). The bias is a logits processor: tokens that hold a target
unit get a bonus, tokens with characters a practice text never holds (digits, markup, what the layout cannot type)
are banned outright, so fewer candidates are wasted.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessor, LogitsProcessorList

from app.analytics.layouts import get_layout
from app.practice.model_files import MODEL_NAME, ensure_model
from app.practice.score import TextScore, clean_text, score_text
from app.practice.signature import PracticeNeeds
from app.practice.words import target_words

log = logging.getLogger("keyscope.practice.lm")

PROMPT_WORDS = 5
CANDIDATES = 4  # samples per prompt
MAX_NEW_TOKENS = 64
TARGET_BIAS = 2.0  # logit bonus of a token holding a target unit (2.0: about 7x likelier)
TEMPERATURE = 0.8
TOP_P = 0.92
REPETITION_PENALTY = 1.15
# Characters a practice sentence never needs; tokens holding them are never sampled.
BANNED_CHARACTERS = frozenset("0123456789*#`_~{}[]|\\<>@^=+$%&/\t")
SYSTEM = "You write short, plain English sentences for typing practice. Write only the sentences."
# One worked example: the small model follows a shown answer far better than an instruction alone.
EXAMPLE_WORDS = ("cold", "coffee", "morning")
EXAMPLE_ANSWER = "Every morning I make a cup of coffee. The house is cold until the sun comes up."


def default_dtype(device: str) -> torch.dtype:
    """bfloat16 where the hardware computes it natively, float32 elsewhere: on an AVX-512 BF16 / AMX CPU it writes
    faster with texts as good (docs/benchmarks.md, "Practice text"); a CPU without it would emulate bfloat16, slower."""
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return torch.float32
    return torch.bfloat16 if ("avx512_bf16" in flags or "amx_bf16" in flags) else torch.float32


def _ask(words: Sequence[str]) -> str:
    return f"Words: {', '.join(words)}\nWrite two sentences using the words."


@dataclass(frozen=True)
class WriteRequest:
    """One prompt: the needs it serves and the seed its target words are drawn with."""

    needs: PracticeNeeds
    seed: int

    def prompt_words(self) -> tuple[str, ...]:
        # Seeded by the signature too, so two signatures with one seed get different words.
        digest = hashlib.blake2b(f"{self.needs.signature}:{self.seed}".encode(), digest_size=8).digest()
        return tuple(target_words(self.needs, PROMPT_WORDS, random.Random(int.from_bytes(digest, "big"))))


@dataclass(frozen=True)
class Candidate:
    request: WriteRequest
    prompt_words: tuple[str, ...]
    raw: str
    text: str
    score: TextScore


@dataclass(frozen=True)
class WriteStats:
    prompts: int
    candidates: int
    new_tokens: int
    seconds: float
    passed: int = 0  # candidates that passed the scorer

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


class _TargetBias(LogitsProcessor):
    """Adds each row's bias (bonus on target tokens, -inf on banned ones) to the next-token scores."""

    def __init__(self, bias: torch.Tensor) -> None:
        self.bias = bias

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return scores + self.bias[:, : scores.shape[-1]]


class PracticeWriter:
    """The loaded model and tokenizer; `write` turns requests into scored candidates. One per process: loading
    takes seconds and 0.5 GB."""

    def __init__(self, folder: Path, *, device: str | None = None, dtype: torch.dtype | None = None) -> None:
        folder = ensure_model(folder)
        started = time.monotonic()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or default_dtype(self.device)
        self.dtype = dtype
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.tokenizer.padding_side = "left"  # generation continues each row from its last real token
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(self.device).eval()
        self.name = MODEL_NAME
        self.eos_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_id
        self._token_texts = [
            self.tokenizer.convert_tokens_to_string([token])
            for token in self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        ]
        log.info("loaded %s on %s (%s) in %.1f s", self.name, self.device, dtype, time.monotonic() - started)

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one writer per process; the cache lives as long as it
    def _banned(self, layout: str) -> torch.Tensor:
        typeable = set(get_layout(layout).characters) | {" ", "\n"}
        special = set(self.tokenizer.all_special_ids)
        mask = torch.zeros(len(self._token_texts))
        for token_id, text in enumerate(self._token_texts):
            if token_id in special:
                continue
            if any(ch in BANNED_CHARACTERS or ch not in typeable for ch in text):
                mask[token_id] = float("-inf")
        mask[self.eos_id] = 0.0
        return mask

    @functools.lru_cache(maxsize=4096)  # noqa: B019
    def _bias(self, needs: PracticeNeeds, target_bias: float) -> torch.Tensor:
        bias = self._banned(needs.layout).clone()
        if needs.units and target_bias:
            for token_id, text in enumerate(self._token_texts):
                lower = text.lower()
                if bias[token_id] == 0 and any(unit in lower for unit in needs.units):
                    bias[token_id] = target_bias
        return bias

    def prompt(self, words: Sequence[str]) -> str:
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": _ask(EXAMPLE_WORDS)},
            {"role": "assistant", "content": EXAMPLE_ANSWER},
            {"role": "user", "content": _ask(words)},
        ]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def write(
        self,
        requests: Sequence[WriteRequest],
        *,
        candidates: int = CANDIDATES,
        max_new_tokens: int = MAX_NEW_TOKENS,
        seed: int = 0,
        target_bias: float = TARGET_BIAS,
        **generate_options: object,
    ) -> tuple[list[list[Candidate]], WriteStats]:
        """Sample `candidates` texts per request in one batched generation; the same requests, settings and seed
        give the same texts. `target_bias` 0 leaves the target units unfavoured (banned characters stay banned).
        `generate_options` go to transformers' `generate` as they are (the benchmark's `use_cache=False`).
        Returns the scored candidates per request and the generation's statistics."""
        if not requests:
            return [], WriteStats(0, 0, 0, 0.0)
        started = time.monotonic()
        words = [request.prompt_words() for request in requests]
        encoded = self.tokenizer([self.prompt(w) for w in words], return_tensors="pt", padding=True).to(self.device)
        rows = [self._bias(request.needs, target_bias) for request in requests]
        bias = torch.stack(rows).repeat_interleave(candidates, dim=0)
        torch.manual_seed(seed)
        with torch.inference_mode():
            output = self.model.generate(
                **encoded,
                do_sample=True,
                temperature=TEMPERATURE,
                top_p=TOP_P,
                repetition_penalty=REPETITION_PENALTY,
                max_new_tokens=max_new_tokens,
                num_return_sequences=candidates,
                logits_processor=LogitsProcessorList([_TargetBias(bias.to(self.device))]),
                eos_token_id=self.eos_id,
                pad_token_id=self.pad_id,
                **generate_options,
            )
        new = output[:, encoded["input_ids"].shape[1] :].cpu()
        new_tokens = 0
        results: list[list[Candidate]] = []
        for index, request in enumerate(requests):
            row: list[Candidate] = []
            for sample in new[index * candidates : (index + 1) * candidates]:
                ids = sample.tolist()
                if self.eos_id in ids:
                    ids = ids[: ids.index(self.eos_id) + 1]
                new_tokens += len(ids)
                raw = self.tokenizer.decode(ids, skip_special_tokens=True)
                text = clean_text(raw)
                score = score_text(text, request.needs, prompt_words=words[index])
                row.append(Candidate(request, words[index], raw, text, score))
            results.append(row)
        passed = sum(c.score.passed for row in results for c in row)
        stats = WriteStats(len(requests), len(requests) * candidates, new_tokens, time.monotonic() - started, passed)
        return results, stats


def best(candidates: Sequence[Candidate], keep: int) -> list[Candidate]:
    """The passing candidates, best first, at most `keep`, no text twice."""
    passing = sorted((c for c in candidates if c.score.passed), key=lambda c: c.score.value, reverse=True)
    kept: list[Candidate] = []
    for candidate in passing:
        if all(candidate.text != other.text for other in kept):
            kept.append(candidate)
        if len(kept) == keep:
            break
    return kept
