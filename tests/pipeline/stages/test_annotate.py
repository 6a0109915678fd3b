"""Score, then decide: annotate appends each annotator's columns, caches them under the annotator's fingerprint (so
adding or changing one recomputes only that one, across --overwrite), and checks its config before any task runs;
the fastText classifier annotator takes any supervised model, here one trained in the test on real sentences."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.annotators import annotator_class
from pipeline.annotators.classifier import ClassifierOptions, FastTextClassifier
from pipeline.core.dataset import Dataset, read_parquet
from pipeline.core.errors import PipelineError
from pipeline.core.runner import LocalRunner
from pipeline.stages.annotate import AnnotateConfig, annotate_table
from pipeline.stages.annotate import run as annotate_run


def lines(shared: Path, lang: str) -> list[str]:
    return gzip.decompress((shared / "langid" / "sentences" / f"{lang}.txt.gz").read_bytes()).decode().splitlines()


def documents(shared: Path, langs: tuple[str, ...], per: int, start: int = 0) -> pa.Table:
    texts, labels = [], []
    for lang in langs:
        sents = lines(shared, lang)
        for i in range(per):
            lo = start + 8 * i
            texts.append(" ".join(sents[lo : lo + 8]))
            labels.append(lang)
    return pa.table({"url_hash": [f"{i:016x}" for i in range(len(texts))], "text": texts, "label": labels})


@pytest.fixture(scope="module")
def classifier_model(tmp_path_factory, shared) -> Path:
    """A supervised fastText model trained here on real sentences: English as `hq`, German and French as `lq`."""
    import fasttext

    folder = tmp_path_factory.mktemp("classifier")
    train = folder / "train.txt"
    rows = [f"__label__hq {s}" for s in lines(shared, "en")[:250]]
    rows += [f"__label__lq {s}" for lang in ("de", "fr") for s in lines(shared, lang)[:125]]
    train.write_text("\n".join(rows) + "\n")
    model = fasttext.train_supervised(str(train), epoch=25, lr=0.5, wordNgrams=2, dim=16, minCount=1, thread=1, seed=1)
    model.save_model(str(folder / "model.bin"))
    return folder / "model.bin"


def test_the_classifier_scores_held_out_real_text(shared, classifier_model):
    held_out = documents(shared, ("en", "de", "fr"), 10, start=260)  # sentences the model never saw
    clf = FastTextClassifier(ClassifierOptions(model=str(classifier_model), label="hq", column="hq_score"))
    scores = clf.annotate(held_out).column("hq_score").to_pylist()
    labels = held_out.column("label").to_pylist()
    en = [s for s, lang in zip(scores, labels) if lang == "en"]
    other = [s for s, lang in zip(scores, labels) if lang != "en"]
    assert min(en) > 0.5 > max(other), (en, other)
    assert clf.columns() == pa.schema([("hq_score", pa.float32())])


def test_the_classifier_refuses_a_label_or_model_it_does_not_have(tmp_path, classifier_model):
    with pytest.raises(PipelineError, match=r"no label '__label__spam' \(it has __label__"):
        FastTextClassifier(ClassifierOptions(model=str(classifier_model), label="spam"))
    with pytest.raises(PipelineError, match="classifier model not found"):
        FastTextClassifier(ClassifierOptions(model=str(tmp_path / "none.bin"), label="hq"))


def test_annotate_table_appends_every_annotators_columns(shared):
    docs = documents(shared, ("en", "de"), 3)
    cfg = AnnotateConfig(input="i", output="o", annotators=["language", "tokens", "quality"])
    out = annotate_table(docs, cfg)
    assert out.column_names[:3] == docs.column_names
    assert out.column_names[3:6] == ["lang", "lang_score", "n_tokens"]
    assert all(c.startswith("quality_") for c in out.column_names[6:]) and len(out.column_names) == 16
    assert out.column("lang").to_pylist() == ["en"] * 3 + ["de"] * 3


def test_the_config_is_checked_before_any_task(classifier_model):
    with pytest.raises(PipelineError, match="unknown annotator 'nope'"):
        AnnotateConfig(input="i", output="o", annotators=["nope"])
    with pytest.raises(ValueError, match="options for 'classifier', which is not in annotators"):
        AnnotateConfig(input="i", output="o", options={"classifier": {"model": "m", "label": "x"}})
    with pytest.raises(PipelineError, match=r"\[annotate.options.classifier\]: label: Field required"):
        AnnotateConfig(input="i", output="o", annotators=["classifier"], options={"classifier": {"model": "m"}})
    with pytest.raises(PipelineError, match=r"\[annotate.options.tokens\]: tokeniser: Extra inputs"):
        AnnotateConfig(input="i", output="o", annotators=["tokens"], options={"tokens": {"tokeniser": "gpt2"}})
    # an annotator outside the package, by import path
    assert annotator_class("pipeline.annotators.quality:QualitySignals").name == "quality"
    with pytest.raises(PipelineError, match="not an Annotator"):
        annotator_class("pipeline.stages.annotate:AnnotateConfig")


def shard_states(out: Path) -> list[dict[str, str]]:
    return [s["annotators"] for s in json.loads((out / "_stage.json").read_text())["shards"]]


def test_adding_or_changing_an_annotator_computes_only_that_one(tmp_path, shared, finished_dataset, classifier_model):
    docs = documents(shared, ("en", "de", "fr"), 4)
    src = finished_dataset(tmp_path / "docs", [docs.slice(0, 6), docs.slice(6)], stage="extract")
    out = tmp_path / "annotated"
    first = AnnotateConfig(input=str(src), output=str(out))
    annotate_run(first, LocalRunner())
    assert shard_states(out) == [{"language": "computed", "tokens": "computed"}] * 2

    import shutil

    model = tmp_path / "model.bin"
    shutil.copy(classifier_model, model)
    options = {"classifier": {"model": str(model), "label": "hq"}}
    second = AnnotateConfig(
        input=str(src), output=str(out), annotators=[*first.annotators, "classifier"], options=options
    )
    with pytest.raises(PipelineError, match="different config"):
        annotate_run(second, LocalRunner())  # another config into the same folder still needs --overwrite
    annotate_run(second, LocalRunner(), overwrite=True)
    assert shard_states(out) == [{"language": "cached", "tokens": "cached", "classifier": "computed"}] * 2
    table = read_parquet(Dataset(out).shard_files()[0])
    assert table.column_names[-4:] == ["lang", "lang_score", "n_tokens", "classifier_score"]
    assert annotate_run(second, LocalRunner()).get("reused")

    # Retrained (another seed) into the same path: the config is the same, the model is not. The stage is redone
    # without --overwrite, and only the classifier is computed again.
    import fasttext

    train = str(classifier_model.parent / "train.txt")
    fasttext.train_supervised(train, epoch=20, lr=0.5, wordNgrams=2, dim=16, minCount=1, thread=1, seed=2).save_model(
        str(model)
    )
    again = annotate_run(second, LocalRunner())
    assert not again.get("reused")
    assert shard_states(out) == [{"language": "cached", "tokens": "cached", "classifier": "computed"}] * 2
    changed = read_parquet(Dataset(out).shard_files()[0]).column("classifier_score")
    assert changed != table.column("classifier_score")  # another model, other scores
    # A damaged cache file is only a cache: computed again, not an error.
    cached = next((out / "_annotations").glob("language-*/*.parquet"))
    cached.write_bytes(b"not parquet")
    annotate_run(second.model_copy(update={"annotators": ["tokens", "language", "classifier"]}), LocalRunner(), True)
    assert sorted({s["language"] for s in shard_states(out)}) == ["cached", "computed"]
    fingerprints = json.loads((out / "_stage.json").read_text())["annotators"]
    assert len({p.name for p in (out / "_annotations").iterdir()}) == 4  # both classifier models stay cached
    assert set(fingerprints) == {"language", "tokens", "classifier"}
