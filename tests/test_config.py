import json
import pickle

import pytest

from hadron_hf import AutoReasonConfig, ConfigError, ModelConfig


def test_defaults_are_the_paper_variant_on_the_embedded_model() -> None:
    cfg = AutoReasonConfig()
    assert (cfg.variant, cfg.judges, cfg.converge_k, cfg.author_temperature, cfg.judge_temperature) == (
        "paper", 3, 2, 0.8, 0.3)
    assert cfg.model.backend == "llama_cpp"


def test_key_is_masked_everywhere() -> None:
    cfg = AutoReasonConfig(model=ModelConfig(base_url="http://127.0.0.1:1/v1", api_key="sk-very-secret-1"))
    for text in (repr(cfg), str(cfg), cfg.model_dump_json(), cfg.model.identity()):
        assert "sk-very-secret-1" not in text
    assert cfg.model.resolve_api_key() == "sk-very-secret-1"
    assert pickle.loads(pickle.dumps(cfg)).model.resolve_api_key() == "sk-very-secret-1"


def test_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "k-123")
    assert ModelConfig(api_key_env="MY_KEY").resolve_api_key() == "k-123"
    assert ModelConfig(api_key_env="MISSING_VAR_XYZ").resolve_api_key() is None


def test_identity_drops_url_credentials() -> None:
    assert ModelConfig(base_url="https://user:pw@host/v1", model="m").identity() == "openai|https://host/v1|m"


def test_roles_fall_back_to_default_model() -> None:
    critic = ModelConfig(base_url="http://c/v1", model="critic")
    cfg = AutoReasonConfig(model=ModelConfig(base_url="http://d/v1", model="d"), critic=critic,
                           judge_models=[ModelConfig(model="j1"), ModelConfig(model="j2")])
    roles = cfg.role_models()
    assert roles["critic"] == critic and roles["teacher"].model == "d"
    assert [m.model for m in cfg.judge_pool_models()] == ["j1", "j2"]
    assert len(cfg.all_models()) == 4


@pytest.mark.parametrize(
    ("data", "message"),
    [({"judges": 0}, "judges"), ({"jduges": 3}, "jduges: unknown field"), ({"variant": "x"}, "variant"),
     ({"model": {"backend": "mlx"}}, "model_path"), ({"model": {"modle": "x"}}, "model.modle: unknown field")],
    ids=["zero-judges", "typo", "bad-variant", "mlx-needs-path", "nested-typo"],
)
def test_validation_errors_are_readable(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AutoReasonConfig.from_dict(data)


def test_from_yaml_and_json_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "c.yaml").write_text("judges: 5\nvariant: hadron\nmodel:\n  base_url: http://x/v1\n  model: m\n")
    (tmp_path / "c.json").write_text(json.dumps({"judges": 7}))
    assert AutoReasonConfig.from_file(tmp_path / "c.yaml").variant == "hadron"
    assert AutoReasonConfig.from_file(tmp_path / "c.json").judges == 7
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid json"):
        AutoReasonConfig.from_file(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="cannot read"):
        AutoReasonConfig.from_file(tmp_path / "missing.yaml")
