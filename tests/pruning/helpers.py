"""Small helpers shared by the pruning tests (not a test module)."""

from __future__ import annotations

import re

import torch


class CharTokenizer:
    """A stand-in tokenizer for the data loaders: one id per character (mod 256), no special tokens.

    The loaders only call ``tokenizer(text, return_tensors="pt").input_ids``.
    """

    class _Enc:
        def __init__(self, ids):
            self.input_ids = ids

    def __call__(self, text, return_tensors=None):
        ids = torch.tensor([[ord(c) % 256 for c in text]], dtype=torch.long)
        return self._Enc(ids)


class WordTokenizer(CharTokenizer):
    """One id per whitespace-separated word (hash mod 1000), to count words easily."""

    def __call__(self, text, return_tensors=None):
        words = re.findall(r"\S+", text)
        return self._Enc(torch.tensor([[hash(w) % 1000 for w in words]], dtype=torch.long))


def tiny_config(layers: int = 2, **kw):
    from transformers import LlamaConfig

    args = dict(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rope_theta=10000.0,
        tie_word_embeddings=True,
    )
    args.update(kw)
    return LlamaConfig(**args)


def tiny_model(layers: int = 2, seed: int = 0, **kw):
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_config(layers, **kw)).eval()


def save_tiny_hf_dir(model, path):
    """Save ``model`` with a small word-level tokenizer as a complete local HF directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i, w in enumerate("the a of and to in is was for on that with as by at from".split()):
        vocab[w] = 3 + i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    model.save_pretrained(str(path), safe_serialization=True)
    fast.save_pretrained(str(path))
    return path
