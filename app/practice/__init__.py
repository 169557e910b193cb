"""Practice text aimed at a typist's weak keys and letter pairs.

- drills.py: rule-based drills of common words (instant; the fallback and the `/practice` route);
- signature.py: a typist's needs as a signature that keys the cache of written texts;
- words.py / score.py: target words from word frequencies, and the scorer every text passes;
- model_files.py / lm.py / generate.py: the language model, converted once, and batched writing;
- texts.py / served.py / serving.py: the text cache and its queues, per-user served records, the answer.
"""

from app.practice.drills import build_drill, drill_targets, practice_words

__all__ = ["build_drill", "drill_targets", "practice_words"]
