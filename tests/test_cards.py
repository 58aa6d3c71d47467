"""Dataset cards of the views: metadata, sections, statistics, usage snippets, and no secrets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakehub
import pytest
import yaml
from datasets import Dataset, List, Value, concatenate_datasets
from fakehub import FakeHub
from huggingface_hub import DatasetCard
from pydantic import SecretStr
from test_views import BAD_PROMPTS, PROMPTS, refine_rows

from hadron_hf import AutoReasonConfig, ModelConfig
from hadron_hf.summary import summarize
from hadron_hf.testing import FakeOpenAIServer
from hadron_hf.views import VIEW_NAMES, CriticOptions, PairOptions, SftOptions, ViewOptions, build_view, view_features
from hadron_hf.views.cards import (
    CARD_DIR,
    TRAINERS,
    Lineage,
    describe_feature,
    generation_settings,
    render_card,
    size_category,
)

fake_hub = fakehub.fake_hub

KEY = "sk-cards-SECRET-0123456789abcdef"
PASSWORD = "hunter2-url-password"
LINEAGE = Lineage("fake-user/refined-prompts", "train", "fake-user/prompts")


@pytest.fixture(scope="module")
def refined() -> Iterator[Dataset]:
    with FakeOpenAIServer(latency=0.002, reasoning="reasoning") as srv:
        yield concatenate_datasets([refine_rows(srv.url, PROMPTS[:5] + BAD_PROMPTS[:2], v, max_iterations=3)
                                    for v in ("paper", "hadron")])


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> AutoReasonConfig:
    """A config whose key sits in the environment and whose judge URL carries credentials."""
    monkeypatch.setenv("HADRON_CARDS_KEY", KEY)
    model = ModelConfig(base_url="http://127.0.0.1:9/v1", model="teacher-7b", api_key_env="HADRON_CARDS_KEY")
    judge = ModelConfig(base_url=f"http://alice:{PASSWORD}@127.0.0.1:9/v1", model="judge-3b",
                        api_key=SecretStr(KEY + "-judge"))
    return AutoReasonConfig(model=model, judge_models=[judge], judges=3, max_iterations=3, converge_k=2)


def header(card_text: str) -> dict[str, Any]:
    assert card_text.startswith("---\n")
    loaded = yaml.safe_load(card_text.split("---\n")[1])
    assert isinstance(loaded, dict)
    return loaded


CASES: list[tuple[str, ViewOptions | None]] = [
    ("sft", None), ("sft", SftOptions(form="prompt_completion", cot="think")), ("sft", SftOptions(cot="field")),
    ("dpo", None), ("dpo", PairOptions(pairs="all", min_margin=1.0)), ("dpo", PairOptions(rejected="draft")),
    ("critic", None), ("critic", CriticOptions(form="messages")),
    ("reward", None), ("kto", PairOptions(pairs="all")),
]


@pytest.mark.parametrize("view,options", CASES, ids=[f"{v}-{i}" for i, (v, _) in enumerate(CASES)])
def test_card_has_metadata_sections_and_usage(refined: Dataset, config: AutoReasonConfig, view: str,
                                              options: ViewOptions | None) -> None:
    result = build_view(refined, view, options)
    card = render_card(result, refined, LINEAGE, config=config, license="apache-2.0", repo_id="fake-user/views",
                       config_name=view)
    text = str(card)
    meta = header(text)
    assert meta == DatasetCard(text).data.to_dict()
    assert meta["license"] == "apache-2.0" and meta["size_categories"] == ["n<1K"]
    assert meta["task_categories"] == (["text-classification"] if view == "reward" else ["text-generation"])
    assert {"hadron_hf", "autoreason"} <= set(meta["tags"])
    assert meta["configs"] == [{"config_name": view, "data_files": [{"split": "train", "path": f"{view}/train-*"}]}]
    for section in ("## Method", "## Format", "## Usage", "## Columns", "## Generation", "## Statistics",
                    "## Lineage"):
        assert text.count(section) == 1, section
    trainer = TRAINERS[view]
    assert f"from trl import {trainer.replace('Trainer', 'Config')}, {trainer}" in text
    assert f"load_dataset('fake-user/views', '{view}', split=\"train\")" in text
    for name, feature in view_features(view, result.options).items():
        assert f"| `{name}` | `{describe_feature(feature)}` |" in text
    stats = summarize(refined)
    assert f"| rows | {stats.rows} ({stats.ok} refined, {stats.errors} failed) |" in text
    assert f"| converged | {stats.converged_pct:.1f}% |" in text
    assert f"| view rows out | {result.rows_out} |" in text
    assert f"| input rows dropped: error row | {stats.errors} |" in text
    assert "| judge models | judge-3b (openai) |" in text and "| iteration cap | 3 |" in text
    assert "`fake-user/refined-prompts` (split `train`)" in text and "`fake-user/prompts`" in text
    assert "{{" not in text and "{%" not in text


def test_card_never_shows_keys_urls_or_credentials(refined: Dataset, config: AutoReasonConfig) -> None:
    leaky = config.model_copy(update={"teacher": ModelConfig(model=f"named-{KEY}", api_key_env="HADRON_CARDS_KEY")})
    for view in VIEW_NAMES:
        text = str(render_card(build_view(refined, view), refined, LINEAGE, config=leaky))
        assert KEY not in text and PASSWORD not in text, view
        assert "alice" not in text and "127.0.0.1" not in text and "HADRON_CARDS_KEY" not in text
    assert "named-*** (openai)" in text  # a key that slipped into a model name is masked


def test_card_without_config_reads_the_traces(refined: Dataset) -> None:
    settings = generation_settings(refined)
    assert settings["variant"] == "hadron, paper"
    assert settings["teacher"] == settings["judge models"] == "m"
    assert settings["judges per panel"] == "3"
    text = str(render_card(build_view(refined, "sft"), refined, Lineage("out/refined")))
    assert "`converge_k` rounds (2 by default)" in text
    assert "load_dataset('path/to/this/folder', split=\"train\")" in text
    assert "configs" not in header(text)  # a local folder: datasets would cache it by name alone


def test_card_keeps_the_hubs_configs_and_dataset_info(refined: Dataset) -> None:
    hub = {"configs": [{"config_name": "dpo", "data_files": "dpo/*"}, {"config_name": "sft", "data_files": "sft/*"}],
           "dataset_info": [{"config_name": "dpo", "splits": [{"name": "train", "num_examples": 3}]}]}
    text = str(render_card(build_view(refined, "dpo"), refined, LINEAGE, config_name="dpo", hub_metadata=hub))
    meta = header(text)
    assert meta["configs"] == hub["configs"] and meta["dataset_info"] == hub["dataset_info"]


def test_card_yaml_passes_the_hubs_validation(refined: Dataset, fake_hub: FakeHub) -> None:
    card = render_card(build_view(refined, "kto"), refined, LINEAGE)
    card.validate(repo_type="dataset")  # POST /api/validate-yaml
    assert ("POST", "/api/validate-yaml", 200) in fake_hub.requests


def test_templates_exist_for_every_view() -> None:
    expected = {"base.md.j2", "refined.md.j2", *(f"{v}.md.j2" for v in VIEW_NAMES)}
    assert {p.name for p in CARD_DIR.glob("*.md.j2")} == expected


@pytest.mark.parametrize("rows,category", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (250_000, "100K<n<1M"),
                                           (5_000_000_000, "n>1B")], ids=str)
def test_size_category(rows: int, category: str) -> None:
    assert size_category(rows) == category


def test_describe_feature() -> None:
    assert describe_feature(Value("float64")) == "float64"
    assert describe_feature(List({"role": Value("string"), "content": Value("string")})) == \
        "list[{role: string, content: string}]"
