"""Shared fixtures.  Tiny random models are for mechanics only; quality claims use SmolLM2."""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny_llama():
    """A random LlamaForCausalLM with GQA (4 query heads, 2 KV heads), 2 layers, fp32, eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rope_theta=10000.0,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg).eval()
    return model


@pytest.fixture(scope="session")
def smollm2():
    """The HF directory of the real SmolLM2-135M (converted once into $BESA_CACHE); load it per test."""
    from pruning.models import resolve_model

    return resolve_model("smollm2-135m")
