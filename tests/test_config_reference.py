"""docs/configuration.md and docs/kubeha-config.schema.json are generated from the config model
(tools/config_reference.py): they are current, and the schema checks real stack files."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import config_reference  # noqa: E402


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(config_reference.SCHEMA.read_text()))


@pytest.fixture
def dev_stack() -> dict:
    return yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())


def test_the_generated_files_are_current():
    assert config_reference.main(["--check"]) == 0, "run `python3 tools/config_reference.py`"


def test_every_key_of_the_model_is_in_the_reference():
    text = config_reference.MARKDOWN.read_text()
    missing = [row.key for row in config_reference.rows(config_reference.ClusterConfig)
               if f"`{row.key}`" not in text and f"`kubeha:{row.key}`" not in text]
    assert missing == []


def test_the_dev_stack_passes_the_schema(validator, dev_stack):
    assert list(validator.iter_errors(dev_stack)) == []


def test_a_misspelt_top_level_key_fails_the_schema(validator, dev_stack):
    stack = copy.deepcopy(dev_stack)
    stack["config"]["kubeha:worker"] = stack["config"].pop("kubeha:workers")
    assert list(validator.iter_errors(stack))


def test_a_value_of_the_wrong_type_fails_the_schema(validator, dev_stack):
    stack = copy.deepcopy(dev_stack)
    stack["config"]["kubeha:ssh"]["port"] = "twenty-two"
    assert list(validator.iter_errors(stack))


def test_other_namespaces_are_left_to_their_owners(validator, dev_stack):
    stack = copy.deepcopy(dev_stack)
    stack["config"]["pulumi:tags"] = {"team": "platform"}
    assert list(validator.iter_errors(stack)) == []
