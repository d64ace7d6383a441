"""Recipe fuzzing: random YAML and random mutations of the real recipes reach `recipe.parse`.

The only allowed outcomes are a valid Recipe or BadInput (exit 2): anything else would escape
as a traceback. Over 1,000 cases in all; hypothesis shrinks any failure to a small recipe.
"""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsecli import recipe as recipes
from sparsecli.errors import BadInput
from tests.conftest import CONFIGS

VALID = {path.name: yaml.safe_load(path.read_text()) for path in sorted(CONFIGS.glob("*.yaml"))}
FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

KEYS = [
    "name",
    "seed",
    "model",
    "zoo",
    "factory",
    "kwargs",
    "checkpoint",
    "input_shape",
    "data",
    "dataset",
    "path",
    "passes",
    "kind",
    "target",
    "scope",
    "per_layer",
    "schedule",
    "end_epoch",
    "finetune",
    "epochs",
    "export",
    "benchmark",
    "gates",
    "ratio",
    "include",
    "exclude",
    "opset",
    "providers",
    "batch_sizes",
    "x",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["magnitude", "channels", "convnet", "digits", "npz", "global", "per_layer", "cubic", "*", ""]),
    st.sampled_from([".:x", "..a:b", "a:", ":b", "os.path:join", "missing_module:build", "w.pt", "/dev/null"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def _outcome(text: str) -> None:
    try:
        assert isinstance(recipes.parse(text, "fuzz.yaml", CONFIGS), recipes.Recipe)
    except BadInput as exc:
        assert str(exc)


@st.composite
def mutated(draw) -> str:
    """A real recipe with one to three leaves replaced, deleted or given a new key."""
    data = yaml.safe_load(yaml.safe_dump(VALID[draw(st.sampled_from(sorted(VALID)))]))
    for _ in range(draw(st.integers(1, 3))):
        node, keys = data, []
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node, key=str) if isinstance(node, dict) else range(len(node))))
            keys.append(key)
            parent, node = node, node[key]
        if not keys:
            data[draw(st.sampled_from(KEYS))] = draw(values)
            continue
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[keys[-1]]
        elif action == "add" and isinstance(node, dict):
            node[draw(st.sampled_from(KEYS))] = draw(values)
        else:
            parent[keys[-1]] = draw(values)
    return yaml.safe_dump(data, sort_keys=False)


@settings(FUZZ, max_examples=600)
@given(mutated())
def test_mutated_real_recipes_parse_or_bad_input(text):
    _outcome(text)


@settings(FUZZ, max_examples=300)
@given(values)
def test_random_yaml_documents(value):
    _outcome(yaml.safe_dump(value))


@settings(FUZZ, max_examples=200)
@given(st.text(alphabet=st.sampled_from(list("abkn:-[]{}&*!|>'\"#%@`,? \n\t0.1")), max_size=60))
def test_random_yaml_text(text):
    _outcome(text)


def test_relative_factory_import_is_bad_input():
    """Found by this fuzzer: `factory: '.:x'` made importlib raise TypeError past the validator."""
    _outcome("name: a\nmodel: {factory: '.:x'}\n")


def test_the_real_recipes_are_valid():
    for name, data in VALID.items():
        assert recipes.parse(yaml.safe_dump(data), name, CONFIGS).name == data["name"]
