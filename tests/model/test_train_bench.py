import json

import pytest

pytest.importorskip("transformers")

import train_bench  # noqa: E402


def test_train_bench_runs_both_models_on_the_same_function(tmp_path):
    out = tmp_path / "bench-train.json"
    argv = ["--model", "tiny", "--block-size", "16", "--batch-size", "2", "--steps", "2", "--warmup", "1"]
    assert train_bench.main([*argv, "--runs", "2", "--device", "cpu", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["check"]["ok"] and res["check"]["abs_diff"] < 1e-4
    assert res["config"]["hf_attention"] == "sdpa" and res["config"]["dtype"] == "fp32"
    assert len(res["runs"]) == 2 and res["ratio_tokens_per_s"] > 0
    for name in ("ours", "hf"):
        assert res["median"][name]["tokens_per_s"] > 0 and res["median"][name]["mfu"] is None  # no CPU peak
    # Same weights and batches: both start from the same loss, up to our 47 padding logits.
    assert abs(res["runs"][0]["ours"]["loss_first"] - res["runs"][0]["hf"]["loss_first"]) < 0.01


def test_mfu_flop_count():
    res = train_bench.bench(train_bench.parse_args(["--model", "tiny", "--block-size", "16", "--check"]))
    assert "runs" not in res  # --check: the parity check only
    # tiny: 2 layers, C=64; the padded wte (tied to lm_head) once, the blocks, ln_f; wpe left out
    block = 2 * 2 * 64 + (64 * 192 + 192) + (64 * 64 + 64) + (64 * 256 + 256) + (256 * 64 + 64)
    n = 50304 * 64 + 2 * block + 2 * 64
    assert res["mfu_n_params"] == n
    assert res["flops_per_token"] == 6 * n + 12 * 2 * 64 * 16


@pytest.mark.parametrize(
    "name,peak",
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_peak_from_device_name(monkeypatch, name, peak):
    torch = train_bench.torch
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert train_bench.peak_flops(torch.device("cuda"), "bf16", None) == peak
    assert train_bench.peak_flops(torch.device("cuda"), "fp32", None) is None  # the table is bf16 only
    assert train_bench.peak_flops(torch.device("cpu"), "fp32", 100.0) == 100e12
