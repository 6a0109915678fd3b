import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: nothing here may reach the Hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model import export_hf
from model.export_hf import export, main, to_hf_state_dict
from model.gpt import GPT, GPT2_VOCAB, GPTConfig, padded_vocab
from model.train import TrainConfig, rank_state, save_checkpoint
from pipeline.core.errors import PipelineError

transformers = pytest.importorskip("transformers")


def random_gpt(bias: bool = True) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=padded_vocab(), n_layer=2, n_head=2, n_embd=64, block_size=64, bias=bias))
    with torch.no_grad():
        for p in model.parameters():
            # Fresh init has zero biases and unit LayerNorm gains, which would hide a mis-mapped key.
            p.add_(0.05 * torch.randn_like(p))
        model.transformer.wte.weight[GPT2_VOCAB:] = 3.0 * torch.randn(padded_vocab() - GPT2_VOCAB, 64)
    return model.eval()


def write_checkpoint(model: GPT, path) -> None:
    cfg = TrainConfig(data="/data/owt/tokens", out_dir=str(path.parent), model="tiny", max_steps=100)
    opt = torch.optim.AdamW(model.parameters())
    save_checkpoint(path, model, opt, 42, cfg, [rank_state(np.random.default_rng(0), {}, torch.device("cpu"))])


@pytest.fixture(scope="module", params=[True, False], ids=["bias", "no_bias"])
def exported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    model = random_gpt(bias=request.param)
    ckpt = root / "run" / "checkpoints" / "ckpt.pt"
    write_checkpoint(model, ckpt)
    out = export(ckpt, root / "hf")
    hf = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    return model, hf, out


def tokens(n: int, t: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, GPT2_VOCAB, (n, t), generator=torch.Generator().manual_seed(seed))


def test_logits_match(exported):
    ours, hf, _ = exported
    x = tokens(3, 64)
    with torch.no_grad():
        logits, _ = ours(x, x)  # targets given: logits at every position, not just the last
        theirs = hf(x).logits
    assert theirs.shape == (3, 64, GPT2_VOCAB)
    diff = (logits[..., :GPT2_VOCAB] - theirs).abs().max().item()
    print(f"max abs logit difference: {diff:.3g}")
    assert diff < 1e-4


def test_loss_matches_with_hf_label_shift(exported):
    ours, hf, _ = exported
    seq = tokens(4, 33, seed=2)
    x, y = seq[:, :-1], seq[:, 1:]  # ours: targets already shifted
    with torch.no_grad():
        logits, our_loss = ours(x, y)
        # HF shifts labels itself: input and labels are the same T+1 tokens; causality makes the first T positions
        # see exactly what ours sees.
        hf_loss = hf(seq, labels=seq).loss
    # Padding rows carry large random weights (random_gpt): a softmax that counted them would differ by far more.
    padded_loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    assert padded_loss.item() - hf_loss.item() > 1e-3
    assert abs(our_loss.item() - hf_loss.item()) < 1e-5


def test_biases_carried_or_zero(exported):
    ours, hf, _ = exported
    for theirs, mine in (
        (hf.transformer.h[0].attn.c_attn, ours.transformer.h[0].attn.c_attn),
        (hf.transformer.ln_f, ours.transformer.ln_f),
    ):
        # bias=False: a zero bias is exactly no bias, and GPT2LMHeadModel always has one.
        expected = mine.bias if ours.config.bias else torch.zeros_like(theirs.bias)
        assert torch.equal(theirs.bias, expected)


def test_config_generation_config_and_card(exported):
    _, hf, out = exported
    assert hf.config.n_positions == 64 and hf.config.vocab_size == GPT2_VOCAB
    assert hf.config.activation_function == "gelu_new" and hf.config.layer_norm_epsilon == 1e-5
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()  # still tied after loading
    gen = transformers.GenerationConfig.from_pretrained(out)
    assert gen.eos_token_id == gen.bos_token_id == gen.pad_token_id == 50256
    assert gen.do_sample and gen.temperature == 0.8 and gen.top_k == 200  # the trainer's own sample settings
    card = (out / "README.md").read_text()
    assert "step | 42 of 100" in card and "/data/owt/tokens" in card and "`tiny`" in card
    assert "lm_eval --model hf --model_args pretrained=<this dir> --tasks lambada_openai,hellaswag" in card
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


def test_tokenizer_matches_tiktoken(exported):
    from pipeline.text.vocab import tokenizer

    _, _, out = exported
    enc = tokenizer("gpt2")
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok.model_max_length == 64 and tok.eos_token_id == 50256
    for text in ("hello world", "Ünïcødé — 日本語 🤖 naïve café", "  lots   of\n\n\twhitespace \n", "it's 3.14 DON'T"):
        ids = tok.encode(text)
        assert ids == enc.encode_ordinary(text)
        assert tok.decode(ids) == text
    # "<|endoftext|>" in text is the special token, as in OpenAI's and HF's GPT-2 tokenizers (and tiktoken with
    # allowed_special); the tokenize stage encodes it as ordinary text instead.
    text = "one<|endoftext|>two"
    assert tok.encode(text) == enc.encode(text, allowed_special="all") == [505, 50256, 11545]
    assert tok.encode(text) != enc.encode_ordinary(text)


def test_strips_compile_and_ddp_prefixes():
    state = random_gpt().state_dict()
    wrapped = {f"module._orig_mod.{k}": v for k, v in state.items()}
    plain, stripped = to_hf_state_dict(state, 2), to_hf_state_dict(wrapped, 2)
    assert plain.keys() == stripped.keys()
    assert all(torch.equal(plain[k], stripped[k]) for k in plain)
    assert plain["transformer.h.0.attn.c_attn.weight"].shape == (64, 192)  # Conv1D: (in, out)
    assert plain["transformer.wte.weight"].shape == (GPT2_VOCAB, 64)
    with pytest.raises(PipelineError, match="n_layer=3"):
        to_hf_state_dict(state, 3)


def test_refuses_to_overwrite(tmp_path, capsys):
    ckpt = tmp_path / "run" / "ckpt.pt"
    write_checkpoint(random_gpt(), ckpt)
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main([str(ckpt), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--overwrite" in err and err.count("\n") == 1
    # --overwrite replaces only an earlier export: never a directory of something else, nor the run itself
    assert main([str(ckpt), str(out), "--overwrite"]) == 2
    assert main([str(ckpt), str(ckpt.parent), "--overwrite"]) == 2
    assert "not an earlier export" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine" and ckpt.is_file()
    (out / "keep.txt").unlink()
    assert main([str(ckpt), str(out)]) == 0  # an empty directory is fine
    (out / "stale.txt").write_text("old")
    assert main([str(ckpt), str(out), "--overwrite"]) == 0
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "run"]


def test_failed_export_leaves_nothing(tmp_path, monkeypatch):
    ckpt = tmp_path / "ckpt.pt"
    write_checkpoint(random_gpt(), ckpt)

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(export_hf, "write_tokenizer", crash)
    with pytest.raises(OSError):
        export(ckpt, tmp_path / "hf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_corrupt_checkpoint_is_one_line_error(tmp_path, capsys):
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"PK\x03\x04 not really a checkpoint")
    assert main([str(ckpt), str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {ckpt}: unreadable checkpoint") and err.count("\n") == 1
    assert not (tmp_path / "hf").exists()
    torch.save({"weights": {}}, ckpt)
    assert main([str(ckpt), str(tmp_path / "hf")]) == 2
    assert "not a model.train checkpoint" in capsys.readouterr().err
