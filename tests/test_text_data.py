"""Text data: JSONL/CSV records, group-preserving splits, labels, tokenized batches trimmed to their longest text."""

from __future__ import annotations

import json

import pytest
import torch

from sparsecli.data import text
from sparsecli.errors import BadInput


def _jsonl(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_reads_jsonl_and_csv(tmp_path):
    records = [{"text": "One sentence here.", "label": "b"}, {"text": "Another, with a comma.", "label": "a"}]
    assert text.read_records(_jsonl(tmp_path / "c.jsonl", records)) == records
    csv_path = tmp_path / "c.csv"
    csv_path.write_text('text,label\n"One sentence here.",b\n"Another, with a comma.",a\n')
    assert text.read_records(csv_path) == records


@pytest.mark.parametrize(
    ("content", "needle"),
    [('{"text": "ok"}\n{"txt": "no"}\n', "record 2 has no non-empty 'text'"), ('{"text": "ok"}\n{bad\n', "JSONL")],
)
def test_bad_records_name_the_problem(tmp_path, content, needle):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(BadInput, match=needle):
        text.read_records(path)


def test_split_keeps_groups_whole():
    records = [{"text": f"s{i}", "group": f"g{i % 7}"} for i in range(70)]
    train, val = text.split_records(records, 0.2, seed=0)
    assert len(train) + len(val) == 70 and val and train
    assert not {r["group"] for r in train} & {r["group"] for r in val}
    assert text.split_records(records, 0.2, seed=0) == (train, val)  # seeded


def test_split_passes_over_a_group_too_big_to_be_a_fair_share_of_validation():
    records = [{"text": f"b{i}", "group": "big"} for i in range(90)] + [
        {"text": f"s{i}", "group": f"g{i % 30}"} for i in range(90)
    ]
    for seed in range(5):
        train, val = text.split_records(records, 0.2, seed)
        assert len(val) >= 36 and "big" not in {r["group"] for r in val}  # 12+ small groups instead


def test_builtin_sentences_are_unique_prose_grouped_by_module():
    records = text.builtin_records()
    assert len(records) > 2000
    assert len({r["text"] for r in records}) == len(records)
    assert {r["group"] for r in records} <= set(text.BUILTIN_MODULES)
    assert all(r["text"][0].isupper() and r["text"][-1] in ".!?" for r in records)


def test_stdlib_corpus_reads_packages_from_source_without_tests_or_tools():
    modules = text.stdlib_modules()
    assert {"json", "email", "argparse", "_pydecimal"} <= set(modules)
    assert not {"test", "antigravity", "this", "__future__"} & set(modules)
    records = text.builtin_records(["email"])  # a package: every file of it, parsed, none imported
    assert len(records) > 200 and {r["group"] for r in records} == {"email"}


def test_labels_map_strings_to_sorted_indices(tmp_path):
    pytest.importorskip("transformers")
    from tests.fixtures.hf_models import tokenizer

    rows = [{"text": f"Read the file number {i}.", "label": "pos" if i % 2 else "neg"} for i in range(20)]
    data = text.load(tokenizer(), ("input_ids", "attention_mask"), path=_jsonl(tmp_path / "l.jsonl", rows),
                     max_length=32, val_fraction=0.25, seed=0)  # fmt: skip
    assert data.num_classes == 2
    labels = torch.cat([data.train.tensors[-1], data.val.tensors[-1]])
    assert set(labels.tolist()) == {0, 1}  # neg -> 0, pos -> 1


def test_batches_are_trimmed_to_the_longest_text_and_example_has_the_asked_length(tmp_path):
    pytest.importorskip("transformers")
    from tests.fixtures.hf_models import tokenizer

    rows = [{"text": "Short."}, {"text": "The quick brown fox jumps over the lazy dog again and again."}] * 4
    names = ("input_ids", "attention_mask", "token_type_ids")
    data = text.load(tokenizer(), names, path=_jsonl(tmp_path / "t.jsonl", rows), max_length=48, val_fraction=0.25,
                     seed=0)  # fmt: skip
    assert data.train.tensors[0].shape[1] == 48 and data.input_names == names
    (ids, mask, types), labels = next(iter(data.loader("train", 8, shuffle=False)))
    assert ids.shape == mask.shape == types.shape and ids.shape[1] == int(mask.sum(1).max()) < 48
    assert ids.dtype == torch.long and len(labels) == len(ids)
    example = text.example(data, 100, batch=2)
    assert [t.shape for t in example] == [torch.Size([2, 100])] * 3
    assert example[1][:, int(data.val.tensors[1][0].sum()) :].sum() == 0  # padding is masked


def test_a_labelled_task_on_unlabelled_text_is_bad_input(tmp_path):
    pytest.importorskip("transformers")
    from tests.fixtures.hf_models import tokenizer

    path = _jsonl(tmp_path / "u.jsonl", [{"text": f"Sentence number {i}."} for i in range(6)])
    with pytest.raises(BadInput, match="no 'label' field"):
        text.load(tokenizer(), ("input_ids",), path=path, max_length=16, val_fraction=0.3, seed=0, needs_labels=True)
