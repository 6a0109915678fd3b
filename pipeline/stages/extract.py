"""extract: fetched HTML (WARC) -> main text with trafilatura, one row per page fetched OK, with the page's declared
language (`html_lang`). Scores (language, length, quality...) are the annotate stage's, so a new score never
extracts again.

Each document gets a time limit, so one pathological page (multi-MB HTML, an element with 50,000 attributes) cannot
stall a worker. Most of trafilatura's time on such pages is in lxml's C parser, where no signal reaches Python, so
the limit is a watchdog: extraction runs in a child process, and a document past the limit kills it.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import weakref
from collections import Counter
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pyarrow as pa
import trafilatura
from pydantic import Field
from trafilatura.settings import use_config

from pipeline.core import storage
from pipeline.core.config import StageConfig
from pipeline.core.dataset import read_parquet, write_parquet
from pipeline.core.errors import PipelineError
from pipeline.core.runner import Runner
from pipeline.core.stage import Record, ShardTask, finish_shard, run_shardwise
from pipeline.text.warc import read_response_at


class ExtractConfig(StageConfig):
    input: str
    output: str
    # trafilatura's options. Balanced by default (its benchmark setting); favor_precision trims more boilerplate and
    # some text, favor_recall keeps more of both. Comments are not the linked page's main text. Metadata (title,
    # date, author) is off: it costs time and OpenWebText kept text only.
    favor_precision: bool = False
    favor_recall: bool = False
    include_comments: bool = False
    include_tables: bool = True
    timeout_s: float = Field(10.0, gt=0)  # per document; a longer one is dropped as extraction_timeout
    # Longer HTML never reaches the parser (html_too_large). Fetch's max_bytes cuts bodies at 5 MB, so by default
    # this only bites on WARCs from elsewhere.
    max_html_bytes: int = Field(5_000_000, ge=1024)
    # How far the extraction process may grow past its size at start (RLIMIT_AS), or no bound; a document that
    # needs more is dropped as extraction_memory.
    max_memory_mb: int | None = Field(None, ge=16)
    min_extracted_chars: int = 1  # below this the page counts as empty_extraction


# The links and fetch columns that travel with each document; the HTML stays in the WARC.
CARRIED = [
    "url_hash",
    "url",
    "final_url",
    "domain",
    "score",
    "n_submissions",
    "first_created_utc",
    "submission_ids",
    "subreddits",
]

TRAFILATURA_OPTIONS = ("favor_precision", "favor_recall", "include_comments", "include_tables")

_HTML_LANG = re.compile(rb"<html[^>]*?\blang\s*=\s*[\"']?([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)*)", re.I)


def declared_language(html: bytes) -> str | None:
    """The page's own claim (`<html lang="pt-BR">` -> "pt"): a hint kept beside fastText's verdict."""
    m = _HTML_LANG.search(html[:8192])
    return m[1].decode("ascii").split("-")[0].split("_")[0].lower() if m else None


def trafilatura_config() -> Any:
    tconfig = use_config()
    # trafilatura's own limit is a SIGALRM too, blind inside lxml; the watchdog covers parsing
    tconfig.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")
    return tconfig


_WARM_UP = b"<html><body><article><p>A paragraph of a few words, enough to extract.</p></article></body></html>"


def serve(fd: int, settings: str) -> None:
    """The child's loop: (html, url) in, ("ok", text) out, until the parent closes its end."""
    conn = Connection(fd)
    options, max_memory_mb, parent = json.loads(settings)
    _die_with(parent)
    tconfig = trafilatura_config()
    # trafilatura's first call loads what it needs lazily (~0.4 s): paid here, not out of a document's time limit
    trafilatura.extract(_WARM_UP, output_format="txt", with_metadata=False, config=tconfig, **options)
    if max_memory_mb is not None:
        # over the size once ready: the interpreter, lxml and pyarrow already map a few hundred MB
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * resource.getpagesize()
        limit = size + max_memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn.send(("ready", None))
    while True:
        try:
            html, url = conn.recv()
        except EOFError:
            return
        try:
            text = trafilatura.extract(
                html, url=url, output_format="txt", with_metadata=False, config=tconfig, **options
            )
        except MemoryError:
            conn.send(("memory", None))
            return  # a half-done allocation may leave the process in a poor state: the parent starts a new one
        except Exception as e:  # noqa: BLE001  raised in the parent, as if trafilatura ran there
            conn.send(("error", f"{type(e).__name__}: {e}"))
            continue
        conn.send(("ok", text))


def _die_with(parent: int) -> None:
    """A task killed while its child parses in C would leave the child running to the end of that parse: on Linux
    the kernel kills it with its parent (PR_SET_PDEATHSIG; the task's thread creates and outlives the child)."""
    if sys.platform == "linux":
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


class ExtractionError(PipelineError):
    pass


class _Worker:
    """One child process, started with a fresh interpreter rather than forked: a Ray worker has many threads
    (gRPC, the core worker), and a fork copies whatever locks they hold."""

    def __init__(self, cfg: ExtractConfig, start_timeout_s: float = 120.0):
        ours, theirs = Pipe()
        settings = json.dumps([{k: getattr(cfg, k) for k in TRAFILATURA_OPTIONS}, cfg.max_memory_mb, os.getpid()])
        root = str(Path(__file__).resolve().parents[2])  # where `pipeline` imports from, also outside the venv
        env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        code = "import sys; from pipeline.stages.extract import serve; serve(int(sys.argv[1]), sys.argv[2])"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(theirs.fileno()), settings],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()
        self.conn = ours
        self._finalizer = weakref.finalize(self, _stop, self.proc, self.conn)
        if not self.conn.poll(start_timeout_s) or self._recv() != ("ready", None):
            self.close()
            raise ExtractionError(
                f"extract: the extraction process did not start (exit code {self.proc.poll()}; its error is above)"
            )

    def _recv(self) -> tuple[str, Any]:
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            return ("crash", None)

    def __call__(self, html: bytes, url: str | None, timeout_s: float) -> tuple[str, Any]:
        """("ok", text), ("error", message), or a drop reason: ("timeout" | "crash" | "memory", None)."""
        try:
            self.conn.send((html, url))
        except OSError:  # died while reading it
            return ("crash", None)
        if not self.conn.poll(timeout_s):
            return ("timeout", None)
        return self._recv()

    def close(self) -> None:
        self._finalizer()

    def kill(self) -> None:
        self.proc.kill()
        self._finalizer()


def _stop(proc: subprocess.Popen, conn: Connection) -> None:
    conn.close()  # the child's recv sees EOF and returns
    try:
        proc.wait(timeout=2.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Extraction:
    text: str | None
    html_lang: str | None
    drop: str | None = None  # extraction_timeout, extraction_crash, extraction_memory, html_too_large

    @property
    def timed_out(self) -> bool:
        return self.drop == "extraction_timeout"


class Extractor:
    """Set up once per task: the extraction process starts once (an interpreter and trafilatura's imports) and
    again only after a document killed it. close() ends it; so does garbage collection or the interpreter's exit."""

    def __init__(self, cfg: ExtractConfig):
        self.cfg = cfg
        self._worker: _Worker | None = None

    def __call__(self, html: bytes, url: str | None) -> Extraction:
        lang = declared_language(html)
        if len(html) > self.cfg.max_html_bytes:
            return Extraction(None, lang, "html_too_large")
        if self._worker is not None and self._worker.proc.poll() is not None:
            self._worker.close()  # died between documents (the OOM killer, say): not this document's doing
            self._worker = None
        if self._worker is None:
            self._worker = _Worker(self.cfg)
        status, value = self._worker(html, url, self.cfg.timeout_s)
        if status == "ok":
            return Extraction(value, lang)
        if status == "error":
            raise ExtractionError(f"trafilatura failed on {url}: {value}")
        self._worker.kill()  # stuck in C, dead, or out of memory: started afresh for the next document
        self._worker = None
        return Extraction(None, lang, f"extraction_{status}")

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def __enter__(self) -> Extractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def extract_shard(task: ShardTask[ExtractConfig, None]) -> Record:
    cfg: ExtractConfig = task.config
    (index_path,) = task.inputs
    src_dir = Path(index_path).parent
    index = read_parquet(index_path)
    drops: Counter = Counter()
    rows: dict[str, list[Any]] = {c: [] for c in CARRIED + ["text", "html_lang"]}
    candidates = 0
    warcs: dict[str, Path] = {}  # each WARC file made local once (a download when the input is remote)
    with Extractor(cfg) as extractor:
        for rec in index.to_pylist():
            if rec["error"] is not None:
                continue  # counted as a drop by fetch; kept in its index for inspection
            candidates += 1
            if (warc := warcs.get(rec["warc_file"])) is None:
                warc = warcs[rec["warc_file"]] = storage.pull(src_dir / rec["warc_file"])
            resp = read_response_at(warc, rec["warc_offset"])
            got = extractor(resp.body, rec["final_url"])
            if got.drop is not None:
                drops[got.drop] += 1
                continue
            if not got.text or len(got.text.strip()) < cfg.min_extracted_chars:
                drops["empty_extraction"] += 1
                continue
            for c in CARRIED:
                rows[c].append(rec[c])
            rows["text"].append(got.text.strip())
            rows["html_lang"].append(got.html_lang)
    schema = pa.schema(
        [index.schema.field(c) for c in CARRIED] + [pa.field("text", pa.string()), pa.field("html_lang", pa.string())]
    )
    out = Path(task.output) / f"{task.name}.parquet"
    write_parquet(pa.table(rows, schema=schema), out)
    return finish_shard(task, [out], rows_in=candidates, rows_out=len(rows["text"]), drops=drops)


def run(cfg: ExtractConfig, runner: Runner | None, overwrite: bool = False) -> Record:
    return run_shardwise("extract", cfg, extract_shard, runner, overwrite, desc="pages", also_verify="warc/")
