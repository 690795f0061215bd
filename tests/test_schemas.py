"""The checked-in JSON Schemas are exactly what the models generate, and the ModelPack config
we write satisfies both our schema and the upstream ModelPack schema."""

import json
from pathlib import Path

import jsonschema
import pytest

from ocimodel.packaging.package import PackageOptions, package_directory
from ocimodel.schemas import SCHEMAS, render

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("filename", sorted(SCHEMAS))
def test_checked_in_schema_matches_model(filename):
    checked_in = (ROOT / "schemas" / filename).read_text()
    assert checked_in == render(SCHEMAS[filename]), (
        f"schemas/{filename} is stale: run `python -m ocimodel.schemas schemas`"
    )


def test_generated_schema_forbids_extra_properties_everywhere():
    schema = json.loads(render(SCHEMAS["modelpack-config.schema.json"]))
    assert schema["additionalProperties"] is False
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object":
            assert definition.get("additionalProperties") is False, name


def test_written_config_validates_against_our_schema(model_dir):
    model = package_directory(model_dir, PackageOptions(name="m", version="1", licenses=["MIT"]))
    schema = json.loads((ROOT / "schemas" / "modelpack-config.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(json.loads(model.config_bytes))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({**json.loads(model.config_bytes), "extra": 1})
