"""What the task heads of the native families share: losses and pooling, as transformers computes them.

The head layers themselves (and so their checkpoint names) stay in each family's
module; these functions only turn their outputs into predictions and losses.
Cross-entropy over labels ignores ``-100`` entries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ConfigError, ModelInputError
from factory.models.configuration import Config


class PadTokenError(ConfigError, ModelInputError):
    """A batch was to be classified by each row's last token, but the config names no pad token to find it."""


def classifier_dropout(config: Config, *fallbacks: str, default: float = 0.1) -> nn.Dropout:
    """Dropout before a classifier: ``classifier_dropout``, else the first of ``fallbacks`` set, else ``default``."""
    for name in ("classifier_dropout", *fallbacks):
        p = getattr(config, name, None)
        if p is not None:
            return nn.Dropout(p)
    return nn.Dropout(default)


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits [..., classes]`` against ``labels [...]`` (per token, per sequence...).

    Logits are upcast to float32 first, as transformers' token and language-model losses do.
    """
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1).to(logits.device))


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token loss: position ``t`` predicts ``labels[t + 1]`` (labels are the inputs, shifted here)."""
    return cross_entropy_loss(logits, F.pad(labels, (0, 1), value=-100)[..., 1:])


def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor, config: Config) -> torch.Tensor:
    """transformers' loss by ``config.problem_type``: regression (MSE), single-label (cross-entropy) or
    multi-label (BCE). Unset, it is inferred from the number of labels and the labels' dtype; unlike
    transformers, the inferred type is not written back into the config.
    """
    config.check_labels()  # problem_type may have been set after the model was built
    num_labels = logits.shape[-1]
    problem_type = config.problem_type
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    labels = labels.to(logits.device)
    if problem_type == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze())
        return F.mse_loss(logits, labels)
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels)


def last_token(
    hidden: torch.Tensor, input_ids: torch.Tensor | None, pad_token_id: int | None, owner: str
) -> torch.Tensor:
    """Each row's ``hidden [batch, seq, ...]`` at its last non-padding token: how decoders classify sequences.

    The rightmost token that is not ``pad_token_id``, so left and right padding both work; the
    last position when padding cannot be seen (no pad id, or ``inputs_embeds`` instead of ids).
    A batch of several rows needs the pad id.
    """
    batch = hidden.shape[0]
    if pad_token_id is None and batch != 1:
        raise PadTokenError(
            f"{owner} needs config.pad_token_id to find the last token of each of the {batch} sequences "
            "in a batch, but pad_token_id is null",
            hint="set pad_token_id in config.json (e.g. to the tokenizer's pad or eos id), "
            "or classify one sequence at a time",
        )
    if pad_token_id is None or input_ids is None:
        last = torch.full((batch,), hidden.shape[1] - 1, device=hidden.device)
    else:
        not_pad = (input_ids != pad_token_id).to(hidden.device, torch.int32)
        last = (torch.arange(input_ids.shape[-1], device=hidden.device, dtype=torch.int32) * not_pad).argmax(-1)
    return hidden[torch.arange(batch, device=hidden.device), last]


def span_logits(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and end logits ``[batch, seq]`` from a question-answering layer's ``[batch, seq, 2]``."""
    start, end = logits.unbind(dim=-1)
    return start.contiguous(), end.contiguous()


def span_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    start_positions: torch.Tensor | None,
    end_positions: torch.Tensor | None,
) -> torch.Tensor | None:
    """Mean of the start and end cross-entropies, or None without both positions.

    Positions outside the input are clamped to one past the end and ignored, as in transformers.
    """
    if start_positions is None or end_positions is None:
        return None
    ignored = start_logits.shape[1]
    start = start_positions.reshape(-1).to(start_logits.device).clamp(0, ignored)
    end = end_positions.reshape(-1).to(end_logits.device).clamp(0, ignored)
    return (
        F.cross_entropy(start_logits, start, ignore_index=ignored)
        + F.cross_entropy(end_logits, end, ignore_index=ignored)
    ) / 2
