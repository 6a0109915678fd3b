import json

import torch

from model.evaluate import lambada, load_model, main
from model.gpt import GPT, GPT2_VOCAB, PRESETS, GPTConfig, padded_vocab
from pipeline.text.vocab import tokenizer


def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=padded_vocab(), **PRESETS["tiny"])).eval()
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "gpt_config": vars(model.config), "step": 7, "config": {}}, path)
    return model, path


def passages_with_known_answers(model: GPT, n: int = 12) -> tuple[list[str], int]:
    """Passages whose last word is the model's own greedy continuation (correct by construction) or another word."""
    enc = tokenizer("gpt2")
    contexts = [f"Passage {i} tells of the river and the town where" for i in range(60)]
    out, right = [], 0
    for ctx in contexts:
        ids = torch.tensor([enc.encode_ordinary(ctx)])
        nxt = int(model(ids)[0][0, -1, : enc.n_vocab].argmax())
        word = enc.decode([nxt])
        if not (word.startswith(" ") and word[1:].isalpha() and enc.encode_ordinary(word) == [nxt]):
            continue
        if len(out) % 2 == 0:
            out.append(ctx + word)
            right += 1
        else:
            out.append(ctx + (" zebra" if word != " zebra" else " apple"))
        if len(out) == n:
            break
    return out, right


def test_lambada_accuracy_counts_exactly_the_greedy_hits(tmp_path):
    model, path = checkpoint(tmp_path)
    passages, right = passages_with_known_answers(model)
    assert len(passages) >= 4
    f = tmp_path / "lambada.jsonl"
    f.write_text("".join(json.dumps({"text": p}) + "\n" for p in passages))
    loaded, state = load_model(path)
    r = lambada(loaded, f)
    assert r["passages"] == len(passages) and r["accuracy"] == right / len(passages)
    # perplexity: exp of the mean over passages of the target word's summed negative log-likelihood
    enc = tokenizer("gpt2")
    nll = 0.0
    for p in passages:
        ctx, word = p.rsplit(" ", 1)
        ids = enc.encode_ordinary(ctx) + enc.encode_ordinary(" " + word)
        k = len(enc.encode_ordinary(" " + word))
        logits, _ = loaded(torch.tensor([ids[:-1]]), torch.tensor([ids[1:]]))
        logp = torch.log_softmax(logits[0, :, :GPT2_VOCAB].float(), -1)  # what lm-eval sees from the export
        nll -= sum(logp[len(ids) - 1 - k + j, ids[len(ids) - k + j]].item() for j in range(k))
    assert abs(r["ppl"] - torch.tensor(nll / len(passages)).exp().item()) / r["ppl"] < 1e-4
    assert main([str(path), "--lambada", str(f), "--out", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["lambada"]["accuracy"] == r["accuracy"]


def test_bad_lambada_line_names_file_and_line(tmp_path, capsys):
    _, path = checkpoint(tmp_path)
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "a fine passage here"}\n{"txt": "no"}\n')
    assert main([str(path), "--lambada", str(f)]) == 2
    assert f"{f}:2: expected a JSON object with a 'text' field" in capsys.readouterr().err


def test_split_loss_reads_the_whole_split_once(tmp_path, shared, finished_dataset):
    import pyarrow as pa

    from model.data import TokenData
    from model.evaluate import split_loss
    from pipeline.core.runner import LocalRunner
    from pipeline.stages.tokenize import TokenizeConfig
    from pipeline.stages.tokenize import run as tokenize_run

    pages = json.loads((shared / "html-benchmark" / "ground-truth.json").read_text())
    texts = [p["articleBody"] for p in pages.values()][:30]
    urls = [f"http://e.example/{i}" for i in range(len(texts))]
    src = finished_dataset(
        tmp_path / "docs", [pa.table({"url_hash": [f"{i:016x}" for i in range(30)], "url": urls, "text": texts})]
    )
    tok = TokenizeConfig(input=str(src), output=str(tmp_path / "tok"), val_fraction=0.0, shard_tokens=4000)
    tokenize_run(tok, LocalRunner())
    model, _ = checkpoint(tmp_path)
    r = split_loss(model, tok.output, "train", batch_size=4)
    d = TokenData(tok.output, "train")
    windows = sum((len(a) - 1) // 64 for a in d.arrays)
    assert r["tokens"] == windows * 64  # every window once
    assert 10.0 < r["loss"] < 11.5 and abs(r["ppl"] - torch.tensor(r["loss"]).exp().item()) < 1e-3 * r["ppl"]
