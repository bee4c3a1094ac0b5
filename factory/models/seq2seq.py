"""Encoder-decoder building blocks shared by the native seq2seq families (T5, BART, Whisper).

- :class:`Attention`: multi-head self- or cross-attention through ``scaled_dot_product_attention``
  with its part of the cache; the projections carry the family's checkpoint names
  (``q_proj``/``k_proj``/``v_proj``/``out_proj`` in BART and Whisper, ``q``/``k``/``v``/``o`` in T5).
- :class:`EncoderLayer` / :class:`DecoderLayer`: the fairseq-style layers (``self_attn``,
  ``encoder_attn``, ``fc1``/``fc2`` and their layer norms) of BART (norm after each block) and
  Whisper (norm before).
- :func:`padding_mask` and :func:`decoder_mask`: boolean masks (True = attend), or None where SDPA
  needs none (nothing padded; ``is_causal`` does the causal part).
- :func:`run_stack`: the layer loop of every encoder and decoder (cache, hidden states, final norm).
- :class:`EncoderDecoderModel`: the trunk's ``forward``: encode once (unless ``encoder_outputs`` are
  given), decode, return a :class:`~factory.models.outputs.Seq2SeqModelOutput`.

The cache (``past_key_values``) is a tuple over decoder layers of ``(self key, self value, cross key,
cross value)``, each ``[batch, heads, seq, head_dim]``: the self part grows by the new tokens, the
cross part is computed from the encoder output on the first decoder call and passed back unchanged
(what :mod:`factory.models.generation` relies on).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from factory.errors import ConfigError, ModelInputError
from factory.models.bert import ACTIVATIONS
from factory.models.configuration import Config
from factory.models.heads import shift_tokens_right
from factory.models.llama import causal_mask
from factory.models.outputs import BaseModelOutput, Seq2SeqModelOutput

#: Per decoder layer: (self key, self value, cross key, cross value); (self key, self value) without encoder.
LayerCache = tuple[torch.Tensor, ...]
Cache = tuple[LayerCache, ...]
KeyValue = tuple[torch.Tensor, torch.Tensor]

#: BART's and Whisper's projection names: query, key, value, output.
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


class FairseqConfig(Config):
    """Fields (and transformers' defaults) the fairseq-style encoder-decoder configs share (BART, Whisper)."""

    encoder_layerdrop: float = 0.0
    decoder_layerdrop: float = 0.0
    activation_function: str = "gelu"
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    init_std: float = 0.02
    scale_embedding: bool = False
    use_cache: bool = True
    is_encoder_decoder: bool = True
    tie_word_embeddings: bool = True


def activation(config: Any, key: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``ACTIVATIONS[config.<key>]``, or a :class:`ConfigError` naming the key and the supported names."""
    name = getattr(config, key)
    if name not in ACTIVATIONS:
        raise ConfigError(
            f"{type(config).__name__}: {key}={name!r} is not supported",
            hint=f"supported activations: {', '.join(sorted(ACTIVATIONS))}",
        )
    return ACTIVATIONS[name]


def check_heads(config: Any, hidden: int, *heads: tuple[str, int]) -> None:
    """Raise :class:`ConfigError` unless ``hidden`` is a positive multiple of every ``(key, heads)``."""
    for key, count in heads:
        if not isinstance(count, int) or count < 1 or hidden % count:
            raise ConfigError(
                f"{type(config).__name__}: the model dimension {hidden} is not a multiple of {key}={count!r}",
                hint="each attention head gets an equal share of the model dimension; fix config.json",
            )


# --- attention ------------------------------------------------------------------------------
class Attention(nn.Module):
    """Multi-head attention: self-attention over the (cached) sequence, or cross-attention over the encoder.

    ``scale`` multiplies the scores (None: ``head_dim ** -0.5``); ``prescale`` applies it to the
    projected queries instead (Whisper's arithmetic). ``key_bias`` overrides ``bias`` for the key
    projection (Whisper's has none).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        head_dim: int,
        *,
        cross: bool = False,
        names: tuple[str, str, str, str] = PROJECTIONS,
        bias: bool = True,
        key_bias: bool | None = None,
        scale: float | None = None,
        prescale: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.cross, self.names = num_heads, head_dim, cross, names
        self.scale = head_dim**-0.5 if scale is None else scale
        self.prescale = prescale
        self.dropout = dropout
        inner = num_heads * head_dim
        q, k, v, o = names
        setattr(self, q, nn.Linear(hidden_size, inner, bias=bias))
        setattr(self, k, nn.Linear(hidden_size, inner, bias=bias if key_bias is None else key_bias))
        setattr(self, v, nn.Linear(hidden_size, inner, bias=bias))
        setattr(self, o, nn.Linear(inner, hidden_size, bias=bias))

    def _project(self, index: int, states: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self._modules[self.names[index]](states)  # type: ignore[misc]
        return out

    def _heads(self, states: torch.Tensor) -> torch.Tensor:
        return states.view(states.shape[0], states.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        key_value_states: torch.Tensor | None = None,
        past: KeyValue | None = None,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, KeyValue]:
        """``mask``: boolean (True = attend) or additive, broadcastable to ``[batch, heads, query, key]``.

        Returns the output and this layer's keys/values for the cache (the cross ones from
        ``key_value_states``, or ``past`` as given).
        """
        query = self._project(0, hidden_states)
        scale = self.scale
        if self.prescale:
            query, scale = query * self.scale, 1.0
        query = self._heads(query)
        if self.cross and past is not None:
            key, value = past
        else:
            source = key_value_states if self.cross else hidden_states
            if source is None:
                raise ModelInputError("cross-attention needs the encoder's hidden states (or its cached keys)")
            key, value = self._heads(self._project(1, source)), self._heads(self._project(2, source))
            if past is not None:
                key, value = torch.cat((past[0], key), dim=2), torch.cat((past[1], value), dim=2)
        out = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal and mask is None and query.shape[2] > 1,
            scale=scale,
        )
        out = out.transpose(1, 2).reshape(hidden_states.shape[0], hidden_states.shape[1], -1)
        return self._project(3, out), (key, value)


# --- masks ------------------------------------------------------------------------------------
def padding_mask(attention_mask: torch.Tensor | None, shape: Sequence[int]) -> torch.Tensor | None:
    """``[batch, 1, 1, keys]`` boolean mask of the keys to attend, or None when nothing is padded.

    ``shape`` is ``(batch, keys)`` of what is attended; a mask of another shape is refused.
    """
    if attention_mask is None:
        return None
    if tuple(attention_mask.shape) != tuple(shape):
        raise ModelInputError(
            f"attention_mask must have shape (batch, seq) = {tuple(shape)} (1 = token, 0 = padding), "
            f"got {tuple(attention_mask.shape)}"
        )
    if bool(attention_mask.all()):
        return None
    return attention_mask[:, None, None, :].bool()


def decoder_mask(
    attention_mask: torch.Tensor | None, batch: int, query_length: int, past_length: int, device: torch.device
) -> tuple[torch.Tensor | None, bool]:
    """Causal (after ``past_length`` cached tokens) plus padding mask of decoder self-attention, and whether
    SDPA's ``is_causal`` should supply the causal part instead (no mask needed)."""
    if attention_mask is not None and tuple(attention_mask.shape) != (batch, past_length + query_length):
        raise ModelInputError(
            f"decoder_attention_mask must have shape (batch, past + seq) = {(batch, past_length + query_length)}, "
            f"got {tuple(attention_mask.shape)}",
            hint="with past_key_values, pass the mask of the cached tokens plus the new ones",
        )
    mask = causal_mask(attention_mask, query_length, past_length, None, device)
    return mask, mask is None and query_length > 1


def full_mask(mask: torch.Tensor | None, is_causal: bool, query_length: int, key_length: int) -> torch.Tensor | None:
    """The boolean mask with the causal part written out when ``is_causal`` stood for it (for additive biases)."""
    if mask is not None or not is_causal:
        return mask
    past = key_length - query_length
    q_index = torch.arange(past, key_length)[:, None]
    return (torch.arange(key_length)[None, :] <= q_index)[None, None]


def past_length(past_key_values: Cache | None, layers: int, batch: int, heads: int, head_dim: int) -> int:
    """How many tokens the cache holds; :class:`ModelInputError` for a cache of another model or batch."""
    if past_key_values is None:
        return 0
    hint = "pass back the past_key_values this model returned with use_cache=True"
    if len(past_key_values) != layers or any(len(layer) not in (2, 4) for layer in past_key_values):
        raise ModelInputError(
            f"past_key_values must hold {layers} layers of (self key, self value[, cross key, cross value]), "
            f"got {len(past_key_values)} entries",
            hint=hint,
        )
    key = past_key_values[0][0]
    want = (batch, heads, head_dim)
    if key.dim() != 4 or (key.shape[0], key.shape[1], key.shape[3]) != want:
        raise ModelInputError(
            f"past_key_values tensors must be [batch, heads, seq, head_dim] with (batch, heads, head_dim) = "
            f"{want}, got {tuple(key.shape)}",
            hint=hint,
        )
    return int(key.shape[2])


# --- fairseq-style layers (BART, Whisper) -------------------------------------------------------
class _FeedForwardBlocks(nn.Module):
    """Residual blocks with a layer norm before (``pre_norm``) or after them, and the ``fc1``/``fc2`` MLP."""

    def __init__(self, config: Any, ffn_dim: int, pre_norm: bool) -> None:
        super().__init__()
        hidden = config.d_model
        self.pre_norm = pre_norm
        self.dropout = config.dropout
        self.activation_dropout = config.activation_dropout
        self.activation_fn = activation(config, "activation_function")
        self.fc1 = nn.Linear(hidden, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, hidden)
        self.final_layer_norm = nn.LayerNorm(hidden)

    def residual(
        self,
        hidden: torch.Tensor,
        norm: nn.Module,
        block: Callable[[torch.Tensor], tuple[torch.Tensor, Any]],
    ) -> tuple[torch.Tensor, Any]:
        """``hidden + dropout(block(norm(hidden)))`` (pre-norm) or ``norm(hidden + dropout(block(hidden)))``."""
        out, extra = block(norm(hidden) if self.pre_norm else hidden)
        hidden = hidden + F.dropout(out, self.dropout, self.training)
        return (hidden if self.pre_norm else norm(hidden)), extra

    def _mlp(self, hidden: torch.Tensor) -> tuple[torch.Tensor, None]:
        hidden = F.dropout(self.activation_fn(self.fc1(hidden)), self.activation_dropout, self.training)
        return self.fc2(hidden), None

    def feed_forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.residual(hidden, self.final_layer_norm, self._mlp)[0]


def _attention(config: Any, heads: int, style: Any, cross: bool = False) -> Attention:
    hidden = config.d_model
    return Attention(
        hidden,
        heads,
        hidden // heads,
        cross=cross,
        key_bias=style.key_bias,
        prescale=style.prescale,
        dropout=config.attention_dropout,
    )


class LayerStyle:
    """How a family's fairseq-style layers differ: norm placement, key bias, query pre-scaling."""

    def __init__(self, *, pre_norm: bool, key_bias: bool = True, prescale: bool = False) -> None:
        self.pre_norm, self.key_bias, self.prescale = pre_norm, key_bias, prescale


class EncoderLayer(_FeedForwardBlocks):
    """Self-attention and MLP blocks (``encoder_attention_heads``, ``encoder_ffn_dim``)."""

    def __init__(self, config: Any, style: LayerStyle) -> None:
        super().__init__(config, config.encoder_ffn_dim, style.pre_norm)
        self.self_attn = _attention(config, config.encoder_attention_heads, style)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        hidden, _ = self.residual(hidden, self.self_attn_layer_norm, lambda h: self.self_attn(h, mask))
        return self.feed_forward(hidden)


class DecoderLayer(_FeedForwardBlocks):
    """Causal self-attention, cross-attention over the encoder and MLP blocks (``decoder_*`` sizes)."""

    def __init__(self, config: Any, style: LayerStyle) -> None:
        super().__init__(config, config.decoder_ffn_dim, style.pre_norm)
        heads = config.decoder_attention_heads
        self.self_attn = _attention(config, heads, style)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.encoder_attn = _attention(config, heads, style, cross=True)
        self.encoder_attn_layer_norm = nn.LayerNorm(config.d_model)

    def forward(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool,
        encoder_hidden_states: torch.Tensor | None,
        encoder_mask: torch.Tensor | None,
        past: tuple[torch.Tensor, ...] | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``past`` / the returned cache entry: (self key, self value), plus (cross key, cross value) with an
        encoder."""
        self_past = None if past is None else (past[0], past[1])
        hidden, self_kv = self.residual(
            hidden,
            self.self_attn_layer_norm,
            lambda h: self.self_attn(h, mask, past=self_past, is_causal=is_causal),
        )
        present: tuple[torch.Tensor, ...] = self_kv
        cross_past = (past[2], past[3]) if past is not None and len(past) == 4 else None
        if encoder_hidden_states is not None or cross_past is not None:
            hidden, cross_kv = self.residual(
                hidden,
                self.encoder_attn_layer_norm,
                lambda h: self.encoder_attn(h, encoder_mask, key_value_states=encoder_hidden_states, past=cross_past),
            )
            present = (*self_kv, *cross_kv)
        return self.feed_forward(hidden), present


# --- stacks --------------------------------------------------------------------------------------
#: ``call(layer, hidden, past) -> (hidden, present)``: one layer of a stack.
LayerCall = Callable[[nn.Module, torch.Tensor, Any], tuple[torch.Tensor, Any]]


def run_stack(
    layers: nn.ModuleList,
    hidden: torch.Tensor,
    call: LayerCall,
    *,
    past_key_values: Cache | None = None,
    use_cache: bool = False,
    output_hidden_states: bool = False,
    final: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> BaseModelOutput:
    """Run ``layers`` in order; ``final`` (the last norm) replaces the last hidden state, as in transformers.

    ``hidden_states`` (when asked) are the input embeddings, then every layer's output.
    """
    states = [hidden] if output_hidden_states else None
    presents = []
    for i, layer in enumerate(layers):
        hidden, present = call(layer, hidden, None if past_key_values is None else past_key_values[i])
        presents.append(present)
        if states is not None:
            states.append(hidden)
    if final is not None:
        hidden = final(hidden)
        if states is not None:
            states[-1] = hidden
    return BaseModelOutput(
        last_hidden_state=hidden,
        past_key_values=tuple(presents) if use_cache else None,
        hidden_states=tuple(states) if states is not None else None,
    )


def embeddings_or_ids(
    owner: str, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, embed: nn.Module
) -> torch.Tensor:
    """``embed(input_ids)`` or ``inputs_embeds``: exactly one must be given."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ModelInputError(
            f"{owner} wants exactly one of input_ids and inputs_embeds, got "
            f"{'both' if input_ids is not None else 'neither'}",
            hint="for an encoder-decoder, pass decoder_input_ids (or labels) for the decoder",
        )
    if inputs_embeds is not None:
        return inputs_embeds
    assert input_ids is not None
    if input_ids.dim() != 2:
        raise ModelInputError(
            f"{owner}: input_ids must have shape (batch, seq_len), got {tuple(input_ids.shape)}",
            hint="add a batch dimension, e.g. input_ids[None]",
        )
    hidden: torch.Tensor = embed(input_ids)
    return hidden


class FairseqDecoder(nn.Module):
    """The decoder of the fairseq-style families (BART, Whisper): ``embed_tokens`` plus positions
    (:meth:`positions`), :meth:`embedded` (BART's ``layernorm_embedding``), dropout, :class:`DecoderLayer` s,
    then the final ``layer_norm`` where the family has one (Whisper)."""

    config: Any
    embed_tokens: nn.Embedding
    layers: nn.ModuleList
    #: Whether ``encoder_attention_mask`` masks the cross-attention (Whisper attends to every frame).
    masks_encoder: ClassVar[bool] = True

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def positions(self, past: int, seq: int, position_ids: torch.Tensor | None, batch: int) -> torch.Tensor:
        """The position embeddings added to the ``seq`` new tokens after ``past`` cached ones."""
        raise NotImplementedError

    def embedded(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        """``attention_mask`` [batch, past + seq] masks decoder padding."""
        hidden = embeddings_or_ids(type(self).__name__, input_ids, inputs_embeds, self.embed_tokens)
        batch, seq = hidden.shape[:2]
        heads = self.config.decoder_attention_heads
        past = past_length(past_key_values, len(self.layers), batch, heads, self.config.d_model // heads)
        mask, is_causal = decoder_mask(attention_mask, batch, seq, past, hidden.device)
        cross = None
        if encoder_hidden_states is not None and self.masks_encoder:
            cross = padding_mask(encoder_attention_mask, encoder_hidden_states.shape[:2])
        hidden = self.embedded(hidden + self.positions(past, seq, position_ids, batch))
        hidden = F.dropout(hidden, self.config.dropout, self.training)
        return run_stack(
            self.layers,
            hidden,
            lambda layer, h, p: layer(h, mask, is_causal, encoder_hidden_states, cross, p),
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            final=getattr(self, "layer_norm", None),
        )


class DecoderWrapper(nn.Module):
    """The decoder alone under ``decoder`` (checkpoint keys ``model.decoder.*``): the trunk of a family's
    causal-lm head. ``encoder_outputs`` (a tensor or an encoder output), when given, feed the cross-attention."""

    decoder: nn.Module

    def get_input_embeddings(self) -> nn.Module:
        embeddings: nn.Module = self.decoder.get_input_embeddings()  # type: ignore[operator]  # a decoder module
        return embeddings

    def forward(self, encoder_outputs: Any = None, **inputs: Any) -> BaseModelOutput:
        if encoder_outputs is not None:
            inputs["encoder_hidden_states"] = _encoder_output(encoder_outputs).last_hidden_state
        out: BaseModelOutput = self.decoder(**inputs)
        return out


# --- the trunk ---------------------------------------------------------------------------------
def _encoder_output(encoder_outputs: Any) -> BaseModelOutput:
    if isinstance(encoder_outputs, BaseModelOutput):
        return encoder_outputs
    if isinstance(encoder_outputs, torch.Tensor):
        return BaseModelOutput(last_hidden_state=encoder_outputs)
    if isinstance(encoder_outputs, (tuple, list)) and encoder_outputs and isinstance(encoder_outputs[0], torch.Tensor):
        hidden = encoder_outputs[1] if len(encoder_outputs) > 1 else None
        return BaseModelOutput(last_hidden_state=encoder_outputs[0], hidden_states=hidden)
    raise ModelInputError(
        f"encoder_outputs must be the encoder's output (or a tuple starting with its last hidden state), "
        f"got {type(encoder_outputs).__name__}"
    )


class EncoderDecoderModel(nn.Module):
    """The ``forward`` of an encoder-decoder trunk with ``self.encoder`` and ``self.decoder`` modules.

    The encoder takes ``input_ids`` / ``attention_mask`` / ``inputs_embeds`` and returns a
    ``BaseModelOutput``; the decoder takes ``input_ids``, ``attention_mask``, ``encoder_hidden_states``,
    ``encoder_attention_mask``, ``past_key_values``, ``inputs_embeds``, ``use_cache``,
    ``output_hidden_states`` (and ``position_ids`` where it has them). With
    ``shift_inputs_for_decoder`` (BART), missing decoder inputs are ``input_ids`` shifted right.
    """

    shift_inputs_for_decoder: ClassVar[bool] = False
    config: Any
    encoder: nn.Module
    decoder: nn.Module

    def get_encoder(self) -> nn.Module:
        return self.encoder

    def get_decoder(self) -> nn.Module:
        return self.decoder

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: Any = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
    ) -> Seq2SeqModelOutput:
        """``attention_mask`` masks the encoder's padding, in the encoder and in cross-attention."""
        if self.shift_inputs_for_decoder and decoder_input_ids is None and decoder_inputs_embeds is None:
            if input_ids is None:
                raise ModelInputError(
                    f"{type(self).__name__}: without decoder_input_ids the decoder reads input_ids shifted right, "
                    "but input_ids were not given",
                    hint="pass input_ids, or decoder_input_ids / decoder_inputs_embeds",
                )
            decoder_input_ids = shift_tokens_right(
                input_ids, self.config.pad_token_id, self.config.decoder_start_token_id
            )
        encoder_inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "inputs_embeds": inputs_embeds}
        decoder_inputs = {
            "input_ids": decoder_input_ids,
            "attention_mask": decoder_attention_mask,
            "inputs_embeds": decoder_inputs_embeds,
        }
        return self.encode_decode(
            encoder_inputs,
            encoder_outputs,
            attention_mask,
            decoder_inputs,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
        )

    def encode_decode(
        self,
        encoder_inputs: dict[str, Any],
        encoder_outputs: Any,
        encoder_attention_mask: torch.Tensor | None,
        decoder_inputs: dict[str, Any],
        *,
        past_key_values: Cache | None,
        use_cache: bool,
        output_hidden_states: bool,
    ) -> Seq2SeqModelOutput:
        """Encode ``encoder_inputs`` unless ``encoder_outputs`` are given, then decode ``decoder_inputs``."""
        if encoder_outputs is None:
            encoded = self.encoder(**encoder_inputs, output_hidden_states=output_hidden_states)
        else:
            encoded = _encoder_output(encoder_outputs)
        decoded = self.decoder(
            **decoder_inputs,
            encoder_hidden_states=encoded.last_hidden_state,
            encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoded.last_hidden_state,
            past_key_values=decoded.past_key_values,
            decoder_hidden_states=decoded.hidden_states,
            encoder_last_hidden_state=encoded.last_hidden_state,
            encoder_hidden_states=encoded.hidden_states,
        )
