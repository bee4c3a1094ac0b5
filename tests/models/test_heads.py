"""The task-head mechanism (factory.models.heads) on a toy family, as a new family file would use it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ModelInputError
from factory.models import heads
from factory.models.configuration import Config
from factory.models.outputs import (
    BaseModelOutput,
    MaskedImageModelingOutput,
    QuestionAnsweringOutput,
    SequenceClassifierOutput,
)


class ToyConfig(Config):
    model_type = "toy"
    vocab_size: int = 11
    hidden_size: int = 6
    pad_token_id: int | None = 0
    tie_word_embeddings: bool = False


class ToyPreTrained(nn.Module):
    config_class = ToyConfig
    base_model_prefix = "toy"

    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config


class ToyModel(ToyPreTrained):
    """Embeddings and one linear layer; ``pooled`` adds a pooler, as BERT's ``add_pooling_layer``."""

    def __init__(self, config: ToyConfig, pooled: bool = True) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if pooled else None

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_hidden_states=False):
        embedded = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        hidden = torch.tanh(self.dense(embedded))
        return BaseModelOutput(
            last_hidden_state=hidden,
            pooler_output=None if self.pooler is None else self.pooler(hidden[:, 0]),
            hidden_states=(embedded, hidden) if output_hidden_states else None,
        )


class ToyTaskModel(heads.TaskModel, ToyPreTrained):
    trunk_class = ToyModel


class ToyForSequenceClassification(heads.SequenceClassification, ToyTaskModel):
    pool = heads.pooler_output
    head_layers = {"dropout": heads.dropout("hidden_dropout_prob"), "classifier": heads.linear("num_labels")}


class ToyForTokenClassification(heads.TokenClassification, ToyTaskModel):
    trunk_options = {"pooled": False}
    head_layers = {"classifier": heads.linear("num_labels")}


class ToyForFirstTokenClassification(heads.SequenceClassification, ToyTaskModel):
    pool = heads.first_token
    head_layers = {"classifier": heads.linear(3)}


class ToyForDecoderClassification(heads.DecoderSequenceClassification, ToyTaskModel):
    pass


class ToyForQuestionAnswering(heads.QuestionAnswering, ToyTaskModel):
    pass


class ToyForMultipleChoice(heads.MultipleChoice, ToyTaskModel):
    pool = heads.pooler_output
    head_layers = {"classifier": heads.linear(1)}


class ToyForCausalLM(heads.CausalLM, ToyTaskModel):
    tied = {"lm_head.weight": "toy.embed.weight"}


def _ids():
    ids = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0], [0, 0, 9, 10]])  # full, right-, left-padded
    return ids, (ids != 0).long()


def test_checkpoint_names_are_the_trunk_prefix_and_the_layer_names():
    model = ToyForSequenceClassification(ToyConfig(num_labels=4))
    assert list(model.state_dict()) == [
        "toy.embed.weight",
        *("toy.dense.weight", "toy.dense.bias", "toy.pooler.weight", "toy.pooler.bias"),
        *("classifier.weight", "classifier.bias"),
    ]
    assert isinstance(model.toy, ToyModel) and model.trunk is model.toy
    assert model.classifier.out_features == 4
    assert model.get_input_embeddings() is model.toy.embed
    # trunk_options reach the trunk; head_layers without a dropout
    token = ToyForTokenClassification(ToyConfig())
    assert token.toy.pooler is None and not hasattr(token, "dropout")


def test_head_layers_apply_in_order_to_the_pooled_output():
    model = ToyForSequenceClassification(ToyConfig(num_labels=3)).eval()
    ids, mask = _ids()
    with torch.no_grad():
        out = model(ids, attention_mask=mask)
        trunk = model.toy(ids, attention_mask=mask)
    assert isinstance(out, SequenceClassifierOutput) and out.loss is None
    torch.testing.assert_close(out.logits, model.classifier(trunk.pooler_output))
    assert out.keys() == ["logits"]


@pytest.mark.parametrize(
    ("cls", "pick"),
    [
        (ToyForFirstTokenClassification, lambda hidden: hidden[:, 0]),
        # the last non-padding token: right padding and left padding
        (ToyForDecoderClassification, lambda hidden: hidden[torch.arange(3), torch.tensor([3, 1, 3])]),
    ],
)
def test_pooling(cls, pick):
    model = cls(ToyConfig(num_labels=3)).eval()
    ids, mask = _ids()
    with torch.no_grad():
        hidden = model.toy(ids).last_hidden_state
        logits = model(ids, attention_mask=mask).logits
    layer = model.classifier if hasattr(model, "classifier") else model.score
    torch.testing.assert_close(logits, layer(pick(hidden)))


def test_decoder_classification_without_pad_id():
    model = ToyForDecoderClassification(ToyConfig(num_labels=3, pad_token_id=None)).eval()
    ids, _ = _ids()
    assert model.score.bias is None
    with torch.no_grad():
        one = model(ids[:1]).logits  # one row: its last position
        torch.testing.assert_close(one, model.score(model.toy(ids[:1]).last_hidden_state[:, -1]))
    with pytest.raises(heads.PadTokenError, match="ToyForDecoderClassification needs config.pad_token_id") as err:
        model(ids)
    assert isinstance(err.value, ModelInputError) and err.value.hint


def test_losses_only_with_labels_and_trunk_fields_carried():
    model = ToyForTokenClassification(ToyConfig(num_labels=5)).eval()
    ids, mask = _ids()
    labels = torch.randint(0, 5, ids.shape).masked_fill(mask == 0, -100)
    with torch.no_grad():
        out = model(ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits.reshape(-1, 5), labels.reshape(-1)))
    assert len(out.hidden_states) == 2 and out.past_key_values is None

    qa = ToyForQuestionAnswering(ToyConfig()).eval()
    with torch.no_grad():
        out = qa(ids, output_hidden_states=True)
        assert isinstance(out, QuestionAnsweringOutput) and out.start_logits.shape == out.end_logits.shape == (3, 4)
        assert out.keys() == ["start_logits", "end_logits", "hidden_states"]
        assert qa(ids, start_positions=torch.tensor([0, 1, 2])).loss is None  # a loss needs both positions
        both = qa(ids, start_positions=torch.tensor([0, 1, 2]), end_positions=torch.tensor([1, 1, 9]))
    expected = heads.span_loss(both.start_logits, both.end_logits, torch.tensor([0, 1, 2]), torch.tensor([1, 1, 9]))
    torch.testing.assert_close(both.loss, expected)


def test_causal_lm_ties_keeps_logits_and_shifts_labels():
    untied = ToyForCausalLM(ToyConfig())
    assert untied.tied_weights == {} and untied.lm_head.weight is not untied.toy.embed.weight
    model = ToyForCausalLM(ToyConfig(tie_word_embeddings=True)).eval()
    assert model.tied_weights == {"lm_head.weight": "toy.embed.weight"}
    assert model.lm_head.weight is model.toy.embed.weight and model.get_output_embeddings() is model.lm_head
    ids, _ = _ids()
    with torch.no_grad():
        full = model(ids, labels=ids)
        last = model(ids, logits_to_keep=1)  # a head input: never passed to the trunk
    assert full.logits.shape == (3, 4, 11) and last.logits.shape == (3, 1, 11)
    torch.testing.assert_close(last.logits, full.logits[:, -1:])
    torch.testing.assert_close(full.loss, F.cross_entropy(full.logits[:, :-1].reshape(-1, 11), ids[:, 1:].reshape(-1)))


def test_multiple_choice_flattens_the_choices():
    model = ToyForMultipleChoice(ToyConfig()).eval()
    ids = torch.randint(1, 11, (2, 3, 4))
    with torch.no_grad():
        out = model(ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([2, 0]))
        flat = model.classifier(model.toy(ids.reshape(6, 4)).pooler_output).view(2, 3)
    torch.testing.assert_close(out.logits, flat)
    torch.testing.assert_close(out.loss, F.cross_entropy(flat, torch.tensor([2, 0])))
    with pytest.raises(
        ModelInputError, match=r"ToyForMultipleChoice: .*\(batch, num_choices, seq_len\).*found \(2, 4\)"
    ):
        model(ids[:, 0])


def test_layer_builders():
    config = ToyConfig(num_labels=3, hidden_dropout_prob=0.3)
    assert heads.dropout("hidden_dropout_prob")(config).p == 0.3
    assert heads.dropout("missing", default=0.2)(config).p == 0.2
    assert heads.dropout("hidden_dropout_prob")(ToyConfig(classifier_dropout=0.5)).p == 0.5
    layer = heads.linear("vocab_size", bias=False)(config)
    assert (layer.in_features, layer.out_features, layer.bias) == (6, 11, None)
    assert heads.linear(2)(config).out_features == 2


# --- the mechanism's options for other inputs and losses ----------------------------------------------------
class ToyPairConfig(Config):
    model_type = "toy-pair"
    sub_configs = {"inner": ToyConfig}
    inner: ToyConfig


class ToyPairPreTrained(nn.Module):
    config_class = ToyPairConfig
    base_model_prefix = "toy"

    def __init__(self, config: ToyPairConfig) -> None:
        super().__init__()
        self.config = config


class ToyMaskingModel(ToyModel):
    """Reads ``keep`` as ViT's trunk reads ``bool_masked_pos``: positions not kept are zeroed."""

    def forward(self, inputs_embeds=None, keep=None, **inputs):
        if keep is not None:
            inputs_embeds = inputs_embeds * keep[..., None]
        return super().forward(inputs_embeds=inputs_embeds, **inputs)


class ToyForReconstruction(heads.TaskModel, ToyPairPreTrained):
    """Built from a sub-config; the loss reads a label the trunk also gets and another trunk input, in parts."""

    trunk_class = ToyMaskingModel
    trunk_config = "inner"
    main_input_name = "inputs_embeds"
    output_class = MaskedImageModelingOutput
    label_names = ("keep",)
    loss_inputs = ("keep", "inputs_embeds")

    def predict(self, out, inputs):
        return {"reconstruction": out.last_hidden_state}

    def loss(self, reconstruction, keep, inputs_embeds):
        error = ((reconstruction - inputs_embeds) ** 2 * keep[..., None]).sum()
        return {"loss": error, "attentions": (error,)}  # a dict: the loss and other output fields


def test_trunk_config_main_input_loss_inputs_and_loss_parts():
    model = ToyForReconstruction(ToyPairConfig(inner={"hidden_size": 5})).eval()
    assert model.toy.dense.in_features == 5  # the trunk was built from the sub-config
    embeds, keep = torch.randn(2, 3, 5), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    with torch.no_grad():
        plain = model(embeds)  # positionally: main_input_name
        out = model(embeds, keep=keep)
    assert plain.loss is None and plain.keys() == ["reconstruction"]
    expected = ((out.reconstruction - embeds) ** 2 * keep[..., None]).sum()
    torch.testing.assert_close(out.loss, expected)
    with torch.no_grad():  # the label reached the trunk too
        torch.testing.assert_close(out.reconstruction, model.toy(embeds * keep[..., None]).last_hidden_state)
    assert out.attentions == (out.loss,)


def test_hidden_states_only_when_asked():
    model = ToyForTokenClassification(ToyConfig(num_labels=5)).eval()

    class Eager(ToyForTokenClassification):  # a head whose trunk always returns the hidden states
        def run_trunk(self, inputs):
            return super().run_trunk({**inputs, "output_hidden_states": True})

    eager = Eager(ToyConfig(num_labels=5)).eval()
    ids, _ = _ids()
    with torch.no_grad():
        assert eager(ids).hidden_states is None and len(eager(ids, output_hidden_states=True).hidden_states) == 2
        assert model(ids).hidden_states is None
