import math

import torch

from model.gpt import GPT, PRESETS, GPTConfig, padded_vocab


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=padded_vocab(), **(PRESETS["tiny"] | kw)))


def test_gpt2_small_has_124m_parameters():
    with torch.device("meta"):
        m = GPT(GPTConfig(vocab_size=50257, **PRESETS["gpt2"]))
    # OpenAI's 124M: 124,439,808 parameters with the 50257-token embedding, counted once (tied).
    assert sum(p.numel() for p in m.parameters()) == 124_439_808
    assert padded_vocab() == 50304 and padded_vocab() % 64 == 0


def test_parameter_names_match_gpt2_checkpoints():
    names = set(tiny().state_dict())
    for n in (
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.h.0.ln_1.weight",
        "transformer.h.0.attn.c_attn.weight",
        "transformer.h.0.attn.c_proj.bias",
        "transformer.h.1.mlp.c_fc.weight",
        "transformer.h.1.mlp.c_proj.weight",
        "transformer.ln_f.bias",
        "lm_head.weight",
    ):
        assert n in names


def test_tied_embeddings_and_scaled_residual_init():
    m = GPT(GPTConfig(vocab_size=padded_vocab(), n_layer=8, n_head=4, n_embd=256, block_size=64))
    assert m.lm_head.weight is m.transformer.wte.weight
    std = m.transformer.h[0].attn.c_proj.weight.std().item()
    assert abs(std - 0.02 / math.sqrt(2 * 8)) < 0.001
    assert abs(m.transformer.h[0].mlp.c_fc.weight.std().item() - 0.02) < 0.001


def test_attention_is_causal():
    m = tiny().eval()
    x = torch.randint(0, 50257, (1, 16))
    y = x.clone()
    y[0, 10:] = torch.randint(0, 50257, (6,))
    lx, _ = m(x, x)
    ly, _ = m(y, y)
    assert torch.allclose(lx[0, :10], ly[0, :10], atol=1e-5)
    assert not torch.allclose(lx[0, 10:], ly[0, 10:], atol=1e-5)


def test_learns_a_batch_and_samples_within_vocab():
    m = tiny()
    opt = m.configure_optimizer(0.0, 3e-3, (0.9, 0.95), "cpu")
    x = torch.randint(0, 1000, (4, 32))
    first = None
    for _ in range(60):
        _, loss = m(x[:, :-1], x[:, 1:])
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert first > 6.5 and loss.item() < 1.0  # ln(50304) ~ 10.8 at init
    out = m.eval().generate(
        x[:1, :4], 10, temperature=1.0, top_k=50, top_p=0.9, generator=torch.Generator().manual_seed(0)
    )
    assert out.shape == (1, 14) and int(out.max()) < 50257


def test_decay_only_on_matrices():
    m = tiny()
    opt = m.configure_optimizer(0.1, 1e-3, (0.9, 0.95), "cpu")
    decay, no_decay = opt.param_groups
    assert all(p.dim() >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert all(p.dim() < 2 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
