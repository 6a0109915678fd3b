import gzip
import json
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline.core.dataset import shard_name
from pipeline.core.stage import ShardTask
from pipeline.stages.extract import ExtractConfig, Extractor, declared_language, extract_shard

SMALL = b"<html><body><article><p>A short page that extracts in a few milliseconds.</p></article></body></html>"


def many_attributes(n: int = 50_000) -> bytes:
    # One element with 50,000 attributes (440 KB): lxml's HTML parser checks each attribute against the ones
    # before it, so the parse alone takes ~5 s here, all of it in C where a SIGALRM cannot interrupt it.
    return b"<html><body><div " + b" ".join(b"a%d=1" % i for i in range(n)) + b">text</div></body></html>"


@pytest.fixture(scope="module")
def default_extractor() -> Iterator[Extractor]:
    with Extractor(ExtractConfig(input="i", output="o")) as ex:
        yield ex


def warm(cfg: ExtractConfig) -> Extractor:
    """An Extractor whose process has started, so a timing below measures the document, not the start."""
    ex = Extractor(cfg)
    assert ex(SMALL, None).text
    return ex


def four_grams(text: str) -> Counter:
    w = re.findall(r"\w+", text.lower())
    return Counter(tuple(w[i : i + 4]) for i in range(len(w) - 3))


def test_extraction_quality_on_real_pages(shared, default_extractor):
    """Word 4-gram precision/recall on 20 real article pages (the benchmark's scoring, on a sample)."""
    truth = json.loads((shared / "html-benchmark" / "ground-truth.json").read_text())
    ex, precisions, recalls = default_extractor, [], []
    for pid in sorted(truth)[:20]:
        html = gzip.decompress((shared / "html-benchmark" / "html" / f"{pid}.html.gz").read_bytes())
        got, want = (
            four_grams(ex(html, truth[pid]["url"]).text or ""),
            four_grams(truth[pid]["articleBody"]),
        )
        tp = sum((got & want).values())
        precisions.append(tp / max(1, sum(got.values())))
        recalls.append(tp / max(1, sum(want.values())))
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    assert p > 0.85 and r > 0.85, (p, r)


def test_boilerplate_removed_from_demo_pages(demo_world, default_extractor):
    from pipeline.text.warc import iter_responses

    pages = [r for r in iter_responses(demo_world / "web" / "pages.warc.gz") if r.status == 200][:10]
    for r in pages:
        text = default_extractor(r.body, r.url).text or ""
        if not text:
            continue
        assert "cookies" not in text and "Subscribe to our newsletter" not in text and "Related stories" not in text


def test_declared_language_hint():
    assert declared_language(b'<!doctype html><html class="x" lang="pt-BR"><body>') == "pt"
    assert declared_language(b"<html><body>no claim</body></html>") is None


def test_a_pathological_page_hits_the_time_limit_off_the_main_thread():
    # 50,000 small link-laden blocks (3.9 MB) take trafilatura ~12 s here; the limit makes that a counted drop, in
    # any thread (a signal-based limit only ever reached the main thread)
    blocks = (
        b"<div class='c%d'><span>a</span> text %d <a href='/x%d'>link</a></div>" % (i, i, i) for i in range(50_000)
    )
    html = b"<html><body>" + b"".join(blocks) + b"</body></html>"
    with warm(ExtractConfig(input="i", output="o", timeout_s=0.2)) as ex, ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        got = pool.submit(ex, html, "http://example.com/deep").result()
        assert time.monotonic() - started < 3
        assert got.timed_out and got.text is None


def test_the_limit_holds_while_lxml_parses_in_c():
    with warm(ExtractConfig(input="i", output="o", timeout_s=0.5)) as ex:
        started = time.monotonic()
        got = ex(many_attributes(), "http://example.com/attributes")
        elapsed = time.monotonic() - started
        assert elapsed < 0.5 + 1.5, elapsed
        assert got.timed_out and got.text is None
        assert ex(SMALL, None).text  # a fresh process takes the next document


def test_a_crash_of_the_extraction_process_is_a_counted_drop():
    with warm(ExtractConfig(input="i", output="o", timeout_s=30)) as ex:
        pid = ex._worker.proc.pid
        # what a segfault in lxml looks like from outside: the process dies of SIGSEGV in the middle of a document
        threading.Timer(0.3, os.kill, (pid, signal.SIGSEGV)).start()
        got = ex(many_attributes(), "http://example.com/attributes")
        assert got.drop == "extraction_crash" and got.text is None
        assert ex(SMALL, None).text
        os.kill(ex._worker.proc.pid, signal.SIGKILL)  # dies between documents
        ex._worker.proc.wait()
        got = ex(SMALL, None)
        assert got.drop is None and got.text  # not this document's fault: a new process, no drop


def test_html_over_max_html_bytes_never_reaches_the_parser():
    ex = Extractor(ExtractConfig(input="i", output="o", max_html_bytes=1024))
    got = ex(b"<html lang='de'><body>" + b"<p>x</p>" * 200 + b"</body></html>", None)
    assert got.drop == "html_too_large" and got.text is None and got.html_lang == "de"
    assert ex._worker is None  # no process was even started for it
    assert ExtractConfig(input="i", output="o").max_html_bytes == 5_000_000  # fetch's max_bytes: no real page cut


def test_a_document_over_max_memory_mb_is_a_counted_drop():
    html = b"<html><body>" + b"".join(b"<p>paragraph %d with some words in it</p>" % i for i in range(20_000))
    with warm(ExtractConfig(input="i", output="o", max_memory_mb=16)) as ex:
        assert ex(html + b"</body></html>", None).drop == "extraction_memory"
        assert ex(SMALL, None).text


def test_extract_shard_counts_each_drop(tmp_path):
    from bench.pages import fetched_dataset  # imports the whole chain: here, not at collection

    pages = [
        ("http://example.com/ok", SMALL),
        ("http://example.com/attributes", many_attributes()),
        ("http://example.com/large", b"<html><body>" + b"<p>words and more words</p>" * 100_000 + b"</body></html>"),
    ]
    index = fetched_dataset(pages, tmp_path / "fetched") / f"{shard_name(0)}.parquet"
    cfg = ExtractConfig(input=str(index.parent), output=str(tmp_path / "docs"), timeout_s=0.5, max_html_bytes=10**6)
    rec = extract_shard(ShardTask(shard_name(0), [str(index)], cfg.output, cfg, None))
    assert rec["rows_out"] == 1 and rec["drops"] == {"extraction_timeout": 1, "html_too_large": 1}


def test_the_extraction_process_dies_with_its_task(tmp_path):
    # A task killed (kill -9 of its worker) while its child parses in C: the child goes at once, not at the end
    # of the parse (PR_SET_PDEATHSIG); 70,000 attributes keep lxml busy for ~10 s.
    import subprocess
    import sys

    import psutil

    page = tmp_path / "page.html"
    page.write_bytes(many_attributes(70_000))
    code = (
        "import sys, threading, time\n"
        "from pipeline.stages.extract import ExtractConfig, Extractor\n"
        "ex = Extractor(ExtractConfig(input='i', output='o', timeout_s=60))\n"
        f"assert ex({SMALL!r}, None).text\n"
        "print(ex._worker.proc.pid, flush=True)\n"
        f"threading.Thread(target=ex, args=(open({str(page)!r}, 'rb').read(), None), daemon=True).start()\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = psutil.Process(int(parent.stdout.readline()))
    time.sleep(1.0)  # the page is in the child's parser now
    assert child.is_running() and child.cpu_percent(interval=0.3) > 20
    parent.kill()
    parent.wait()
    gone, _ = psutil.wait_procs([child], timeout=2.0)
    assert gone, "the extraction process outlived its task"
