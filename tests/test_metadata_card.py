"""The model card model: strict validation with one-line errors naming the field, the JSON
Schema, encoding into ModelPack config fields + dev.ocimodel.* annotations and back, and the
deltas `ocimodel diff` shows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from ocimodel.errors import InvalidManifest, UsageError
from ocimodel.metadata import (
    CARD_ANNOTATIONS,
    MetricValue,
    ModelCard,
    card_deltas,
    check_spdx_expression,
    decode_card,
    encode_card,
    has_credentials,
    read_card,
    unknown_annotations,
    validate_card,
)
from ocimodel.metadata.encoding import MAX_CARD_ANNOTATION_BYTES
from ocimodel.packaging.modelpack import ModelConfig, ModelDescriptor, ModelFS, ModelSettings

ROOT = Path(__file__).resolve().parent.parent
SHA_A = "sha256:" + "a" * 64
SHA_B = "sha256:" + "b" * 64

FULL = {
    "name": "sentiment-bert",
    "version": "1.4.0",
    "description": "Sentiment classifier.\nSecond line.",
    "authors": ["Jane Doe <jane@example.com>", "ML Team"],
    "licenses": ["Apache-2.0", "MIT OR (BSD-3-Clause AND LicenseRef-internal)"],
    "framework": "transformers",
    "format": "safetensors",
    "task": "text-classification",
    "tags": ["nlp", "english"],
    "metrics": {"accuracy": 0.931, "steps": 1200, "f1": {"value": 0.9, "dataset": "sst2", "split": "validation"}},
    "hyperparameters": {"learning_rate": 3e-4, "epochs": 3, "optimizer": "adamw", "fp16": True, "seed": None, "warmup": 0.0},
    "datasets": [{"uri": "hf://datasets/stanfordnlp/sst2", "digest": SHA_A}, {"uri": "s3://bucket/extra.parquet"}],
    "code": {"repository": "https://github.com/org/repo.git", "commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False},
    "base_models": [
        {"reference": "registry.example.com/base/bert:1", "digest": SHA_B, "relation": "fine-tune"},
        {"reference": "hf://google-bert/bert-base-uncased", "relation": "distill"},
    ],
    "environment": {"python": "3.11.9", "packages": {"torch": "2.3.1", "transformers": "4.41.2"}},
    "created": "2024-06-01T14:00:00+02:00",
}


def problem(data) -> UsageError:
    with pytest.raises(UsageError) as info:
        validate_card(data, source="ocimodel.yaml")
    return info.value


# --- the model -----------------------------------------------------------------------------


def test_full_card_validates_and_created_is_utc():
    card = validate_card(FULL)
    assert card.created == datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    assert card.created.tzinfo == UTC
    assert isinstance(card.metrics["f1"], MetricValue)
    assert card.metrics["steps"] == 1200 and type(card.metrics["steps"]) is int
    assert card.hyperparameters["fp16"] is True and card.hyperparameters["seed"] is None


def test_empty_card_is_valid_and_empty_sections_collapse():
    assert ModelCard().is_empty()
    card = validate_card({"code": {}, "environment": {"packages": {}}})
    assert card.code is None and card.environment is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"metrics": {"acc": "abc"}}, "metadata: metrics.acc: not a number: 'abc'"),
        ({"metrics": {"acc": "0.93"}}, "metadata: metrics.acc: not a number: '0.93'"),
        ({"metrics": {"acc": True}}, "metadata: metrics.acc: not a number: True"),
        ({"metrics": {"acc": float("nan")}}, "metadata: metrics.acc: not a finite number: nan"),
        ({"metrics": {"acc": {"value": "x"}}}, "metadata: metrics.acc.value: not a number: 'x'"),
        ({"metrics": {"acc": {"value": 1, "dataset": ""}}}, "metadata: metrics.acc.dataset: must not be empty"),
        ({"metrics": {"acc": [1]}}, "metadata: metrics.acc: not a number: [1]"),
        ({"hyperparameters": {"layers": [1, 2]}}, "metadata: hyperparameters.layers: not a JSON scalar"),
        ({"hyperparameters": {"lr": float("inf")}}, "metadata: hyperparameters.lr: not a finite number"),
        ({"licenses": ["MIT and Apache-2.0"]}, "metadata: licenses[0]: not an SPDX license expression (operators are upper-case"),
        ({"licenses": "MIT"}, "metadata: licenses: not a list: 'MIT'"),
        ({"version": 1.1}, "metadata: version: not a string: 1.1"),
        ({"tags": ["ok", "not ok"]}, "metadata: tags[1]: invalid value 'not ok'"),
        ({"tags": ["a", "a"]}, "metadata: tags: duplicate entry: 'a'"),
        ({"datasets": [{"uri": "s3://b/x", "digest": "sha256:abc"}]}, "metadata: datasets[0].digest: malformed digest 'sha256:abc'"),
        ({"datasets": [{"uri": "s3://b/x", "digest": "md5:" + "a" * 32}]}, "metadata: datasets[0].digest: unsupported digest algorithm"),
        ({"datasets": [{"digest": SHA_A}]}, "metadata: datasets[0].uri: required"),
        ({"datasets": [{"uri": "https://user:pw@host/d"}]}, "metadata: datasets[0].uri: contains credentials"),
        ({"base_models": [{"reference": "r", "relation": "copy"}]}, "metadata: base_models[0].relation: 'copy' is not one of"),
        ({"base_models": [{"reference": f"r@{SHA_A}", "digest": SHA_B}]}, "metadata: base_models[0]: reference names digest"),
        ({"code": {"commit": "two words"}}, "metadata: code.commit: invalid value 'two words'"),
        ({"code": {"dirty": "yes"}}, "metadata: code.dirty: not true or false: 'yes'"),
        ({"code": {"repository": "https://ghp_secret@github.com/org/x"}}, "metadata: code.repository: contains credentials"),
        ({"environment": {"packages": {"torch": 2}}}, "metadata: environment.packages.torch: not a string: 2"),
        ({"created": "2024-06-01T12:00:00"}, "metadata: created: not an RFC 3339 time with a zone"),
        ({"created": 1717243200}, "metadata: created: not an RFC 3339 time: 1717243200"),
        ({"name": ""}, "metadata: name: must not be empty"),
        ({"name": "two\nlines"}, "metadata: name: invalid value"),
    ],
)
def test_invalid_values_name_the_field(data, message):
    error = problem(data)
    assert error.message.startswith(message), error.message
    assert "\n" not in error.message
    assert error.hint.startswith("from ocimodel.yaml")


def test_unknown_fields_are_refused_with_a_suggestion():
    error = problem({"metric": {"acc": 1}})
    assert error.message == "metadata: metric: unknown field"
    assert "did you mean 'metrics'?" in error.hint
    error = problem({"metrics": {"acc": {"valeu": 1}}})
    assert error.message == "metadata: metrics.acc.valeu: unknown field"
    assert "did you mean 'value'?" in error.hint
    error = problem({"code": {"sha": "abcdef0"}})
    assert error.message == "metadata: code.sha: unknown field"


def test_more_problems_are_counted_in_the_hint():
    error = problem({"metrics": {"a": "x"}, "tags": "t", "version": 2})
    assert "2 more problems" in error.hint


def test_version_hint_says_to_quote():
    assert 'quote it' in problem({"version": 1.1}).hint


def test_inline_digest_is_split_off():
    card = validate_card({"datasets": [{"uri": f"s3://b/x@{SHA_A}"}], "base_models": [{"reference": f"reg/m:1@{SHA_B}"}]})
    assert card.datasets[0].uri == "s3://b/x" and card.datasets[0].digest == SHA_A
    assert card.base_models[0].reference == "reg/m:1" and card.base_models[0].digest == SHA_B
    assert card.base_models[0].relation == "fine-tune"
    # an ssh URI keeps its '@'
    assert validate_card({"datasets": [{"uri": "ssh://git@host/d"}]}).datasets[0].uri == "ssh://git@host/d"


@pytest.mark.parametrize(
    "expression",
    ["MIT", "Apache-2.0", "GPL-2.0+", "MIT OR Apache-2.0", "(MIT OR Apache-2.0) AND BSD-3-Clause",
     "GPL-2.0-only WITH Classpath-exception-2.0", "LicenseRef-my.license", "DocumentRef-spdx:LicenseRef-x",
     "((MIT))", "MIT AND (GPL-3.0-or-later WITH GCC-exception-3.1 OR Apache-2.0)",
     "mit", "Apache-2.0 WITH LLVM-exception", "LicenseRef-foo OR DocumentRef-spdx:LicenseRef-x"],
)
def test_spdx_expressions_accepted(expression):
    assert check_spdx_expression(expression) == expression


@pytest.mark.parametrize(
    "expression",
    ["", " MIT", "MIT AND", "AND MIT", "MIT Apache-2.0", "(MIT", "MIT)", "()", "MIT WITH", "Apache 2.0",
     "MIT/BSD", "MIT WITH (X)", "mit or bsd", "MIT OR OR BSD",
     # Checked against the SPDX license list: unknown ids and exceptions, a malformed LicenseRef.
     "Foo-1.0", "MIT OR Apache 2", "MIT WITH Foo-exception", "LicenseRef-a+", "DocumentRef-x:MIT"],
)
def test_spdx_expressions_refused(expression):
    with pytest.raises(ValueError, match="not an SPDX license expression"):
        check_spdx_expression(expression)


def test_an_unknown_license_is_refused_with_the_way_to_name_it():
    with pytest.raises(ValueError, match=r"\(unknown license; .* LicenseRef-<name>\): 'Foo-1.0'"):
        check_spdx_expression("Foo-1.0")
    with pytest.raises(ValueError, match=r"\(unknown license exception\): 'MIT WITH Foo-exception'"):
        check_spdx_expression("MIT WITH Foo-exception")


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("https://github.com/org/repo.git", False),
        ("git@github.com:org/repo.git", False),
        ("ssh://git@github.com/org/repo.git", False),
        ("s3://bucket/key", False),
        ("https://host/data?version=2", False),
        ("https://user:token@github.com/org/repo.git", True),
        ("https://ghp_abc@github.com/org/repo.git", True),
        ("ssh://git:pw@host/x", True),
        ("https://bucket.s3.amazonaws.com/x?X-Amz-Signature=abc&X-Amz-Credential=k", True),
        ("https://host/x?access_token=abc", True),
        ("user:pw@host:path", True),
    ],
)
def test_credentials_detection(url, secret):
    assert has_credentials(url) is secret


def test_json_schema_teaches_and_rejects():
    from ocimodel.schemas import render  # the renderer the checked-in schemas use

    schema = json.loads(render(ModelCard))
    assert schema["additionalProperties"] is False
    for name, definition in schema["$defs"].items():
        assert definition.get("additionalProperties") is False, name
    for name, prop in schema["properties"].items():
        assert prop.get("description"), f"{name} has no description"
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(schema["examples"][0])
    validator.validate(json.loads(validate_card(FULL).model_dump_json(exclude_none=True)))
    for bad in ({"extra": 1}, {"metrics": {"acc": "0.9"}}, {"metrics": {"bad name": 1}},
                {"base_models": [{"reference": "r", "relation": "copy"}]}, {"code": {"dirty": 1}},
                {"datasets": [{"uri": "x", "digest": "sha256:1"}]}):
        assert list(validator.iter_errors(bad)), bad
    # every example in the schema is itself a valid card
    validate_card(schema["examples"][0])


# --- encoding ------------------------------------------------------------------------------

MODELFS = {"type": "layers", "diffIds": [SHA_A]}


def full_config(encoded) -> dict:
    """The ModelPack config as packaging would write it, through the real strict models."""
    config = ModelConfig(
        descriptor=ModelDescriptor.model_validate(encoded.descriptor),
        config=ModelSettings.model_validate(encoded.config),
        modelfs=ModelFS.model_validate(MODELFS),
    )
    return json.loads(config.to_json())


def test_encode_fills_modelpack_fields_and_annotations():
    encoded = encode_card(validate_card(FULL))
    assert encoded.descriptor == {
        "name": "sentiment-bert",
        "version": "1.4.0",
        "description": "Sentiment classifier.\nSecond line.",
        "authors": ["Jane Doe <jane@example.com>", "ML Team"],
        "licenses": ["Apache-2.0", "MIT OR (BSD-3-Clause AND LicenseRef-internal)"],
        "createdAt": "2024-06-01T12:00:00Z",
        "sourceURL": "https://github.com/org/repo.git",
        "revision": "0123456789abcdef0123456789abcdef01234567",
        "datasetsURL": ["hf://datasets/stanfordnlp/sst2", "s3://bucket/extra.parquet"],
    }
    assert encoded.config == {"format": "safetensors"}
    annotations = encoded.annotations
    assert list(annotations) == sorted(annotations)
    assert set(annotations) <= set(CARD_ANNOTATIONS)
    assert annotations["dev.ocimodel.framework"] == "transformers"
    assert annotations["dev.ocimodel.task"] == "text-classification"
    assert annotations["dev.ocimodel.code.dirty"] == "false"
    assert annotations["dev.ocimodel.tags+json"] == '["nlp","english"]'
    assert annotations["dev.ocimodel.metrics+json"] == (
        '{"accuracy":0.931,"f1":{"dataset":"sst2","split":"validation","value":0.9},"steps":1200}'
    )
    assert annotations["dev.ocimodel.hyperparameters+json"] == (
        '{"epochs":3,"fp16":true,"learning_rate":0.0003,"optimizer":"adamw","seed":null,"warmup":0.0}'
    )
    assert json.loads(annotations["dev.ocimodel.base-models+json"])[1] == {
        "reference": "hf://google-bert/bert-base-uncased", "relation": "distill"}
    assert json.loads(annotations["dev.ocimodel.environment+json"]) == FULL["environment"]
    assert json.loads(annotations["dev.ocimodel.datasets+json"]) == FULL["datasets"]
    # nothing of ours in the ModelPack config
    config = full_config(encoded)
    upstream = json.loads((ROOT / "tests" / "data" / "modelpack-config-schema.json").read_text())
    jsonschema.Draft202012Validator(upstream).validate(config)


def test_encoding_is_deterministic():
    a = encode_card(validate_card(FULL))
    reordered = dict(reversed(list(FULL.items())))
    reordered["metrics"] = dict(reversed(list(FULL["metrics"].items())))
    b = encode_card(validate_card(reordered))
    assert a == b


@pytest.mark.parametrize(
    "data",
    [
        FULL,
        {},
        {"name": "m"},
        {"metrics": {"x": 1.0, "y": 1, "z": {"value": -0.5}}},
        {"code": {"commit": "abcdef0"}},
        {"code": {"commit": "v1.2.0"}},
        {"code": {"repository": "git@github.com:o/r.git", "dirty": True}},
        {"hyperparameters": {"a": "", "b": "1", "c": False, "d": None, "e": 1e-300}},
        {"datasets": [{"uri": "s3://x"}]},
        {"created": "2020-02-29T23:59:59.123456Z", "description": "ünïcode ✓"},
    ],
)
def test_round_trip(data):
    card = validate_card(data)
    encoded = encode_card(card)
    assert decode_card(full_config(encoded), encoded.annotations) == card
    # and through manifest-JSON serialisation of the annotations
    annotations = json.loads(json.dumps(encoded.annotations))
    assert decode_card(full_config(encoded), annotations) == card


def test_decode_ignores_unknown_dev_ocimodel_keys_and_other_config_fields():
    card = validate_card({"name": "m", "task": "t"})
    encoded = encode_card(card)
    annotations = {
        **encoded.annotations,
        "dev.ocimodel.future-thing+json": '{"x":1}',
        "dev.ocimodel.owner": "team",
        "org.opencontainers.image.title": "m",
    }
    config = full_config(encoded)
    config["descriptor"]["title"] = "Title"
    config["descriptor"]["vendor"] = "ACME"
    config["config"]["paramSize"] = "7B"
    assert decode_card(config, annotations) == card
    assert unknown_annotations(annotations) == {
        "dev.ocimodel.future-thing+json": '{"x":1}', "dev.ocimodel.owner": "team"}
    assert decode_card(None, None) == ModelCard()


def test_decode_of_foreign_config_uses_datasets_url():
    config = {"descriptor": {"name": "m", "datasetsURL": ["https://data.example/x"]}, "config": {}, "modelfs": MODELFS}
    card = decode_card(config, {})
    assert [d.uri for d in card.datasets] == ["https://data.example/x"]


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"dev.ocimodel.metrics+json": '{"acc":"x"}'}, "metadata: metrics.acc: not a number: 'x'"),
        ({"dev.ocimodel.metrics+json": "{not json"}, "annotation dev.ocimodel.metrics+json is not valid JSON"),
        ({"dev.ocimodel.metrics+json": '{"a":1,"a":2}'}, "duplicate key 'a'"),
        ({"dev.ocimodel.tags+json": '"nlp"'}, "metadata: tags: not a list"),
        ({"dev.ocimodel.code.dirty": "yes"}, "annotation dev.ocimodel.code.dirty: not true or false"),
    ],
)
def test_decode_is_strict_on_types(annotations, message):
    with pytest.raises(InvalidManifest) as info:
        decode_card({"descriptor": {}, "config": {}}, annotations)
    assert message in info.value.message
    if info.value.message.startswith("metadata: metrics"):
        assert "dev.ocimodel.metrics+json" in info.value.hint


def test_read_card_drops_what_does_not_validate():
    config = {"descriptor": {"name": "m", "licenses": ["Apache 2.0"], "createdAt": "not a time"}, "config": {}}
    annotations = {"dev.ocimodel.metrics+json": '{"acc":0.9}', "dev.ocimodel.tags+json": "{bad",
                   "dev.ocimodel.new": "x"}
    decoded = read_card(config, annotations)
    assert decoded.card == validate_card({"name": "m", "metrics": {"acc": 0.9}})
    assert decoded.unknown == {"dev.ocimodel.new": "x"}
    text = " | ".join(decoded.problems)
    assert "licenses" in text and "created" in text and "tags+json" in text


def test_encode_refuses_an_oversized_card():
    card = validate_card({"metrics": {f"m{i:04d}/" + "x" * 100: i for i in range(500)},
                          "hyperparameters": {f"h{i:04d}" + "y" * 100: "z" * 100 for i in range(500)}})
    with pytest.raises(UsageError, match=f"over the {MAX_CARD_ANNOTATION_BYTES}-byte limit"):
        encode_card(card)


# --- deltas --------------------------------------------------------------------------------


def test_metric_deltas_and_license_changes():
    old = validate_card({
        "licenses": ["MIT"],
        "metrics": {"acc": 0.93, "loss": 0.4, "f1": {"value": 0.8, "dataset": "sst2", "split": "val"},
                    "gone": 1, "steps": 100},
        "hyperparameters": {"lr": 0.001, "epochs": 3, "opt": "adam", "flag": 1},
    })
    new = validate_card({
        "licenses": ["MIT", "Apache-2.0"],
        "metrics": {"acc": 0.95, "loss": {"value": 0.3}, "f1": {"value": 0.85, "dataset": "sst2", "split": "test"},
                    "added": 2.5, "steps": 150},
        "hyperparameters": {"lr": 0.001, "epochs": 4, "flag": True, "new": None},
    })
    delta = card_deltas(old, new)
    by_name = {m.name: m for m in delta.metrics}
    assert [m.name for m in delta.metrics] == sorted(by_name)
    assert (by_name["acc"].old, by_name["acc"].new, by_name["acc"].delta) == (0.93, 0.95, 0.02)
    assert by_name["acc"].comparable
    assert by_name["loss"].delta == -0.1 and by_name["loss"].comparable
    assert by_name["steps"].delta == 50 and type(by_name["steps"].delta) is int
    assert by_name["f1"].delta == 0.05 and not by_name["f1"].comparable
    assert by_name["f1"].to_dict()["old_split"] == "val"
    assert (by_name["gone"].old, by_name["gone"].new, by_name["gone"].delta) == (1, None, None)
    assert (by_name["added"].old, by_name["added"].new, by_name["added"].delta) == (None, 2.5, None)
    assert delta.licenses.changed
    assert delta.licenses.added == ("Apache-2.0",) and delta.licenses.removed == ()
    params = {p.name: p for p in delta.hyperparameters}
    assert set(params) == {"epochs", "opt", "flag", "new"}  # lr unchanged; 1 -> true is a change
    assert params["opt"].to_dict() == {"name": "opt", "old": "adam"}
    assert params["new"].to_dict() == {"name": "new", "new": None}
    json.dumps(delta.to_dict())  # the --json output is plain JSON


def test_deltas_against_nothing():
    card = validate_card({"metrics": {"acc": 0.9}, "licenses": ["MIT"]})
    delta = card_deltas(None, card)
    assert delta.metrics[0].old is None and delta.metrics[0].new == 0.9
    assert delta.licenses.added == ("MIT",)
    assert not card_deltas(card, card).licenses.changed
    assert all(not m.changed for m in card_deltas(card, card).metrics)


# --- through today's packaging -------------------------------------------------------------


def test_card_through_package_directory(model_dir):
    """The wiring the push needs, done with the PackageOptions fields that exist today: the
    card's descriptor fields -> options, its annotations -> options.annotations; decoding the
    packaged config + manifest gives the card back (format: what packaging detected, as the
    card sets none)."""
    from ocimodel.oci.models import parse_manifest
    from ocimodel.packaging.package import PackageOptions, package_directory

    card = validate_card({k: v for k, v in FULL.items() if k not in ("datasets", "format")})
    encoded = encode_card(card)
    d = encoded.descriptor
    options = PackageOptions(
        name=d.get("name"), version=d.get("version"), description=d.get("description"),
        licenses=d.get("licenses", ()), authors=d.get("authors", ()), source=d.get("sourceURL"),
        revision=d.get("revision"), created=card.created, annotations=encoded.annotations,
    )
    model = package_directory(model_dir, options)
    manifest = parse_manifest(model.manifest_bytes)
    config = json.loads(model.config_bytes)
    decoded = decode_card(config, manifest.annotations)
    assert decoded.format == config["config"].get("format")
    assert decoded.model_copy(update={"format": None}) == card
