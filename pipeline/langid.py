"""Document annotations computed once, at extraction: language by fastText lid.176 and length in GPT-2 tokens.

The filter stage only compares these columns with thresholds, so trying another threshold or language list never
runs the model again.
"""

from __future__ import annotations

from pipeline.resources import fasttext_model, fasttext_model_path, tokenizer


class LanguageScorer:
    def __init__(self, model_path: str | None = None):
        self.model = fasttext_model(str(fasttext_model_path(model_path)))

    def __call__(self, texts: list[str]) -> tuple[list[str], list[float]]:
        if not texts:
            return [], []
        # fastText predicts on one line: a newline would end the input early.
        labels, scores = self.model.predict([" ".join(t.split()) for t in texts], k=1)
        return [lab[0].removeprefix("__label__") for lab in labels], [round(float(s[0]), 4) for s in scores]


def token_counts(texts: list[str], name: str = "gpt2") -> list[int]:
    return [len(t) for t in tokenizer(name).encode_ordinary_batch(texts)] if texts else []
