import pytest

from pipeline.core.config import load_config, parse_value
from pipeline.core.errors import ConfigError
from pipeline.stages.filter import FilterConfig
from pipeline.stages.harvest import HarvestConfig


def test_set_values_are_toml_literals():
    assert parse_value("3") == 3
    assert parse_value("0.5") == 0.5
    assert parse_value("true") is True
    assert parse_value('["en", "de"]') == ["en", "de"]
    assert parse_value("runs/x") == "runs/x"


def test_file_then_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[filter]\ninput = "a"\noutput = "b"\nmin_tokens = 10\n')
    cfg = load_config(FilterConfig, "filter", f, ["min_tokens=64", 'languages=["en","de"]'])
    assert cfg.min_tokens == 64 and cfg.languages == ["en", "de"] and cfg.input == "a"
    assert cfg.drop_wikipedia is True  # default kept


def test_unknown_key_names_key_and_known_keys():
    with pytest.raises(ConfigError) as e:
        load_config(FilterConfig, "filter", None, ["input=a", "output=b", "min_tokenz=3"])
    msg = str(e.value)
    assert "unknown key 'min_tokenz'" in msg and "min_tokens" in msg and "\n" not in msg


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError) as e:
        load_config(HarvestConfig, "harvest", None, ['input=["x"]', "output=o", "min_score=lots"])
    assert "'min_score'" in str(e.value) and "'lots'" in str(e.value)


def test_missing_required_key_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="missing required key 'output'"):
        load_config(FilterConfig, "filter", None, ["input=a"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(FilterConfig, "filter", tmp_path / "nope.toml")


def test_fingerprint_ignores_transport_keys():
    from pipeline.stages.fetch import FetchConfig

    a = FetchConfig(input="i", output="o", proxy="http://127.0.0.1:1", threads=4)
    b = FetchConfig(input="i", output="o", proxy="http://127.0.0.1:2", threads=8)
    c = FetchConfig(input="i", output="o", max_bytes=4096)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
