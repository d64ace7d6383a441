"""`--json` documents of the quick commands validate against the schemas shipped in sparsecli/schemas/."""

from __future__ import annotations

import json

import jsonschema
import pytest

from sparsecli import schemas
from tests.conftest import CONFIGS


@pytest.mark.parametrize(
    ("args", "schema", "code"),
    [
        (("validate", CONFIGS / "quickstart.yaml"), "validate", 0),
        (("recipes",), "recipes", 0),
        (("recipes", "show", "quickstart"), "recipes", 0),
        (("validate", CONFIGS / "quickstart.yaml", "--set", "passes.0.target=2"), "error", 2),
        (("recipes", "show", "nope"), "error", 2),
        (("sweep", CONFIGS / "quickstart.yaml", "--set", "passes.0.target=0.5"), "error", 2),
    ],
)
def test_json_documents_match_their_schema(cli, args, schema, code):
    got, out, _ = cli(*args, "--json")
    assert got == code
    document = json.loads(out)  # exactly one document on stdout
    jsonschema.validate(document, schemas.load(schema))
    if schema == "error":
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**document, "exit_code": 0}, schemas.load(schema))


def test_quiet_prints_nothing_on_success(cli):
    code, out, err = cli("validate", CONFIGS / "quickstart.yaml", "--quiet")
    assert (code, out, err) == (0, "", "")


def test_every_schema_is_a_valid_json_schema():
    from importlib.resources import files

    shipped = files("sparsecli.schemas").iterdir()
    names = [p.name.removesuffix(".schema.json") for p in shipped if p.name.endswith(".schema.json")]
    assert {"report", "sweep", "sensitivity", "validate", "recipes", "error"} <= set(names)
    for name in names:
        jsonschema.Draft202012Validator.check_schema(schemas.load(name))
