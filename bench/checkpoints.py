"""Random checkpoints for the benchmark, written once by transformers and cached under ``.bench/ckpt/``.

Run as a script (``python bench/checkpoints.py NAME OUT_DIR``) so that the parent
benchmark process never holds torch, transformers or a gigabyte of weights.
Each spec is a transformers config class, a model class and the config values;
the cache directory name carries a digest of spec + transformers version, and a
directory is published with an atomic rename only once it is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

#: name -> (transformers config class, model class, config kwargs, what it is for)
SPECS: dict[str, tuple[str, str, dict, str]] = {
    "tiny-bert": (
        "BertConfig",
        "BertModel",
        dict(
            vocab_size=1000,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            max_position_embeddings=128,
        ),
        "cold build, tiny",
    ),
    "llama-1g": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(
            vocab_size=32000,
            hidden_size=1024,
            intermediate_size=2816,
            num_hidden_layers=16,
            num_attention_heads=16,
            num_key_value_heads=16,
            max_position_embeddings=2048,
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=2,
        ),
        "cold build, ~1 GB fp32",
    ),
    "gpt2-fwd": (
        "GPT2Config",
        "GPT2LMHeadModel",
        dict(vocab_size=50257, n_embd=768, n_layer=6, n_head=12, n_positions=1024),
        "forward + generation",
    ),
    "llama-fwd": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(
            vocab_size=32000,
            hidden_size=512,
            intermediate_size=1376,
            num_hidden_layers=8,
            num_attention_heads=8,
            num_key_value_heads=4,
            max_position_embeddings=2048,
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=2,
        ),
        "forward + generation",
    ),
    "gemma-200m": (
        "GemmaConfig",
        "GemmaForCausalLM",
        dict(
            vocab_size=32000,
            hidden_size=640,
            intermediate_size=2560,
            num_hidden_layers=6,
            num_attention_heads=8,
            num_key_value_heads=1,
            head_dim=80,
            max_position_embeddings=2048,
        ),
        "Gemma family row, ~225 MB fp32 (multi-query, tied)",
    ),
    "gemma2-200m": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        dict(
            vocab_size=32000,
            hidden_size=640,
            intermediate_size=2560,
            num_hidden_layers=6,
            num_attention_heads=8,
            num_key_value_heads=2,
            head_dim=80,
            max_position_embeddings=2048,
            sliding_window=32,
            query_pre_attn_scalar=80,
        ),
        "Gemma 2 family row, ~225 MB fp32 (soft-capping, 32-token sliding layers)",
    ),
    "phi3-200m": (
        "Phi3Config",
        "Phi3ForCausalLM",
        dict(
            vocab_size=32064,
            hidden_size=640,
            intermediate_size=2560,
            num_hidden_layers=6,
            num_attention_heads=8,
            num_key_value_heads=8,
            max_position_embeddings=131072,
            original_max_position_embeddings=4096,
            rope_scaling=dict(type="longrope", short_factor=[1.0] * 40, long_factor=[4.0] * 40),
            pad_token_id=32000,
            eos_token_id=32000,
        ),
        "Phi-3 family row, ~300 MB fp32 (fused projections, long rope)",
    ),
    "mixtral-250m": (
        "MixtralConfig",
        "MixtralForCausalLM",
        dict(
            vocab_size=32000,
            hidden_size=512,
            intermediate_size=768,
            num_hidden_layers=3,
            num_attention_heads=8,
            num_key_value_heads=2,
            num_local_experts=8,
            num_experts_per_tok=2,
            max_position_embeddings=2048,
        ),
        "Mixtral family row, ~250 MB fp32 (8 experts, top-2)",
    ),
    "qwen3moe-250m": (
        "Qwen3MoeConfig",
        "Qwen3MoeForCausalLM",
        dict(
            vocab_size=32000,
            hidden_size=512,
            intermediate_size=1536,
            num_hidden_layers=3,
            num_attention_heads=8,
            num_key_value_heads=4,
            head_dim=64,
            num_experts=16,
            num_experts_per_tok=4,
            moe_intermediate_size=384,
            norm_topk_prob=True,
            max_position_embeddings=2048,
            bos_token_id=1,
            eos_token_id=2,
        ),
        "Qwen3-MoE family row, ~260 MB fp32 (16 experts, top-4)",
    ),
    "roberta-fwd": (
        "RobertaConfig",
        "RobertaModel",
        dict(
            vocab_size=50265,
            hidden_size=768,
            num_hidden_layers=4,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=514,
            type_vocab_size=1,
        ),
        "family: roberta-base, 4 of 12 layers, ~270 MB fp32",
    ),
    "distilbert-fwd": (
        "DistilBertConfig",
        "DistilBertModel",
        dict(vocab_size=30522, dim=768, n_layers=6, n_heads=12, hidden_dim=3072, max_position_embeddings=512),
        "family: distilbert-base, ~265 MB fp32",
    ),
    "mpnet-fwd": (
        "MPNetConfig",
        "MPNetModel",
        dict(
            vocab_size=30527,
            hidden_size=768,
            num_hidden_layers=6,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=514,
        ),
        "family: all-mpnet-base-v2, 6 of 12 layers, ~265 MB fp32",
    ),
    "modernbert-fwd": (
        "ModernBertConfig",
        "ModernBertModel",
        dict(
            vocab_size=50368,
            hidden_size=768,
            num_hidden_layers=6,
            num_attention_heads=12,
            intermediate_size=1152,
            max_position_embeddings=8192,
            local_attention=128,
        ),
        "family: ModernBERT-base, 6 of 22 layers (2 global), ~275 MB fp32",
    ),
    "t5-150m": (
        "T5Config",
        "T5ForConditionalGeneration",
        dict(
            vocab_size=32128,
            d_model=512,
            d_kv=64,
            d_ff=2048,
            num_layers=3,
            num_heads=8,
            feed_forward_proj="gated-gelu",
            decoder_start_token_id=0,
        ),
        "native family: T5 (gated-GELU, t5-small widths), ~150 MB fp32",
    ),
    "bart-150m": (
        "BartConfig",
        "BartForConditionalGeneration",
        dict(
            vocab_size=50265,
            d_model=512,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=8,
            decoder_attention_heads=8,
            encoder_ffn_dim=2048,
            decoder_ffn_dim=2048,
            max_position_embeddings=1024,
        ),
        "native family: BART (bart-base widths), ~160 MB fp32",
    ),
    "whisper-150m": (
        "WhisperConfig",
        "WhisperForConditionalGeneration",
        dict(
            vocab_size=51865,
            num_mel_bins=80,
            d_model=512,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=8,
            decoder_attention_heads=8,
            encoder_ffn_dim=2048,
            decoder_ffn_dim=2048,
        ),
        "native family: Whisper (whisper-base widths, 30 s windows), ~175 MB fp32",
    ),
    "vit-fwd": (
        "ViTConfig",
        "ViTForImageClassification",
        dict(hidden_size=768, num_hidden_layers=8, num_attention_heads=12, intermediate_size=3072, num_labels=1000),
        "cold build + forward, ~235 MB fp32",
    ),
    "clip-fwd": (
        "CLIPConfig",
        "CLIPModel",
        dict(
            text_config=dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048),
            vision_config=dict(hidden_size=768, num_hidden_layers=4, num_attention_heads=12, intermediate_size=3072),
            projection_dim=512,
        ),
        "cold build + forward (ViT-B/32 towers, 4 layers each), ~265 MB fp32",
    ),
    "siglip-fwd": (
        "SiglipConfig",
        "SiglipModel",
        dict(
            text_config=dict(hidden_size=768, num_hidden_layers=2, num_attention_heads=12, intermediate_size=3072),
            vision_config=dict(hidden_size=768, num_hidden_layers=3, num_attention_heads=12, intermediate_size=3072),
        ),
        "cold build + forward (base/16 towers, 2 + 3 layers, attention-pooling head), ~270 MB fp32",
    ),
    "wav2vec2-fwd": (
        "Wav2Vec2Config",
        "Wav2Vec2ForCTC",
        dict(num_hidden_layers=6, vocab_size=32),
        "cold build + forward (wav2vec2-base with 6 layers, CTC head), ~210 MB fp32",
    ),
}

_DONE = ".bench-complete"


def cache_name(name: str, transformers_version: str) -> str:
    """Directory name for a spec: the name plus a digest of its spec and the transformers version."""
    blob = json.dumps([SPECS[name], transformers_version], sort_keys=True)
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def is_complete(directory: Path) -> bool:
    return (directory / _DONE).is_file()


def write(name: str, out_dir: Path) -> None:
    """Create the random model ``name`` with transformers and save it to ``out_dir`` atomically."""
    import torch
    import transformers

    config_cls, model_cls, kwargs, _ = SPECS[name]
    torch.manual_seed(0)
    config = getattr(transformers, config_cls)(**kwargs)
    model = getattr(transformers, model_cls)(config).to(torch.float32).eval()
    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    (tmp / _DONE).write_text(json.dumps({"spec": SPECS[name], "transformers": transformers.__version__}))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)


if __name__ == "__main__":
    write(sys.argv[1], Path(sys.argv[2]))
