from pathlib import Path

import pytest
import yaml

from synth.recipes.cod.config import CodConfig
from synth.recipes.entitycs.config import EntityCSConfig
from synth.recipes.sap.config import SapConfig
from synth.config_file import load_config
from synth.errors import ConfigError
from synth.paths import DATA_DIR


@pytest.mark.parametrize("recipe, cls", [("sap", SapConfig), ("entitycs", EntityCSConfig), ("cod", CodConfig)])
def test_shipped_configs_validate(recipe, cls):
    config = load_config(DATA_DIR / "configs" / f"{recipe}.yaml", recipe=recipe)
    assert isinstance(config, cls)
    assert Path(config.input.path).is_absolute() and Path(config.input.path).exists()


def _write(tmp_path, data) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    (tmp_path / "in.jsonl").write_text('{"id": "1", "text": "x"}\n')
    return path


def test_unknown_key_names_file_and_key(tmp_path):
    path = _write(tmp_path, {"recipe": "sap", "input": {"path": "in.jsonl"}, "languages": ["de"], "sampling": {"temprature": 1}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and "sampling.temprature" in message and "unknown key" in message
    assert "\n" not in message


def test_wrong_type_and_bad_language(tmp_path):
    path = _write(tmp_path, {"recipe": "sap", "input": {"path": "in.jsonl"}, "languages": ["de"], "runner": {"batch_size": "many"}})
    with pytest.raises(ConfigError, match="runner.batch_size"):
        load_config(path)
    path = _write(tmp_path, {"recipe": "sap", "input": {"path": "in.jsonl"}, "languages": ["German"]})
    with pytest.raises(ConfigError, match="languages.*not ISO 639"):
        load_config(path)


def test_missing_input_file(tmp_path):
    path = _write(tmp_path, {"recipe": "sap", "input": {"path": "nope.jsonl"}, "languages": ["de"]})
    with pytest.raises(ConfigError, match="input.path"):
        load_config(path)


def test_overrides_and_hash_ignores_runtime_settings(tmp_path):
    path = _write(tmp_path, {"recipe": "sap", "input": {"path": "in.jsonl"}, "languages": ["de"]})
    base = load_config(path)
    limited = load_config(path, overrides={"input.limit": 3, "output.dir": "/tmp/x", "runner.batch_size": 2})
    assert limited.input.limit == 3 and limited.runner.batch_size == 2
    assert base.content_hash() == limited.content_hash()
    other = load_config(path, overrides={"languages": ["de", "hi"]})
    assert other.content_hash() != base.content_hash()


def test_recipe_mismatch(tmp_path):
    path = _write(tmp_path, {"recipe": "sap", "input": {"path": "in.jsonl"}, "languages": ["de"]})
    with pytest.raises(ConfigError, match="not 'cod'"):
        load_config(path, recipe="cod")
