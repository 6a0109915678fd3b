"""The datatrove side of bench/extract_bench.py, run in .venv-datatrove: its Trafilatura extractor and its
LanguageFilter (lid.176, given our model file instead of a download) over the same pages, with settings matched to
our extract stage (balanced extraction, no comments, no deduplication, 10 s per document, English at >= 0.5).

    .venv-datatrove/bin/python bench/datatrove_peer.py PAGES.jsonl.gz LID176_MODEL
"""

import gzip
import json
import sys
import time

from datatrove.data import Document
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.filters import LanguageFilter
from datatrove.utils import lid


def main() -> int:
    pages_file, model_path = sys.argv[1], sys.argv[2]
    from fasttext.FastText import _FastText

    model = _FastText(model_path)
    lid.FT176LID.model = property(lambda self: model)  # offline: the same model file our stage uses
    with gzip.open(pages_file, "rt") as f:
        docs = [
            Document(text=p["html"], id=str(i), metadata={"url": p["url"]}) for i, p in enumerate(map(json.loads, f))
        ]
    extractor = Trafilatura(favour_precision=False, timeout=10, deduplicate=False)
    language = LanguageFilter(languages=["en"], language_threshold=0.5)
    started = time.perf_counter()
    kept = list(language.run(extractor.run(iter(docs))))
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "kept": len(kept), "pages": len(docs)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
