"""A faster scorer for multiple-choice tasks: lm-eval's ``HFLM`` with each context run ONCE.

lm-eval's ``HFLM`` scores every (context, continuation) request as its own sequence: HellaSwag's
four endings re-run the same context four times, and the log-softmax covers every position of
every padded row.  :class:`SharedContextLM` keeps everything of ``HFLM`` (tokenization, the
``(context_enc, continuation_enc)`` split, truncation rules, the cache hook) and replaces only
``_loglikelihood_tokens``: requests are grouped by their context tokens; per group the model runs
the context once (keeping its KV cache and the logits of the last position only), then all
continuations as one right-padded batch on top of the repeated cache.  Right padding needs no
attention mask (a causal model never attends forward).  The result is the same sum of
``log p(continuation | context)`` and the same greedy flag as ``HFLM``: equal to float rounding
(tests/pruning/test_hellaswag.py checks 1e-4 on SmolLM2 and identical per-example accuracy).

Causal LLaMA-family models only (the toolkit's models); a request longer than the model's window
falls back to ``HFLM``'s own path.
"""

from __future__ import annotations

import functools
import inspect


@functools.cache
def shared_context_lm() -> type:
    """The class :class:`SharedContextLM` (a subclass of lm-eval's ``HFLM``; lm-eval is an optional
    dependency, imported here on first use).  ``pruning.zeroshot.shared_context.SharedContextLM``
    gives the same class."""
    from lm_eval.models.huggingface import HFLM

    class SharedContextLM(HFLM):
        """``HFLM`` whose log-likelihood requests run each distinct context once (see the module doc)."""

        _loglikelihood_tokens = _loglikelihood_tokens
        _score_group = _score_group

    SharedContextLM.__module__ = __name__
    return SharedContextLM


def __getattr__(name: str):
    if name == "SharedContextLM":
        return shared_context_lm()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
    """``HFLM._loglikelihood_tokens`` with the requests grouped by context (the method of :class:`SharedContextLM`)."""
    res: list = [None] * len(requests)
    groups: dict[tuple[int, ...], list[int]] = {}
    long = []
    for i, (_, ctx, cont) in enumerate(requests):
        if len(ctx) + len(cont) > self.max_length + 1 or not ctx or not cont:
            long.append(i)
        else:
            groups.setdefault(tuple(ctx), []).append(i)
    if long:  # truncation from the left: HFLM's own rules
        for i, r in zip(long, super(shared_context_lm(), self)._loglikelihood_tokens([requests[i] for i in long], disable_tqdm=True, override_bs=override_bs)):
            res[i] = r
    for ctx, idx in groups.items():
        for i, answer in zip(idx, self._score_group(list(ctx), [requests[i][2] for i in idx])):
            res[i] = answer
            if requests[i][0] is not None:
                self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
    return res


def _score_group(self, ctx: list[int], conts: list[list[int]]) -> list[tuple[float, bool]]:
    """(sum log p(cont | ctx), cont is the greedy continuation) for each continuation of ``ctx``."""
    import torch  # heavy: pruning.zeroshot stays importable without it
    import torch.nn.functional as F

    model, dev = self.model, self.device
    with torch.no_grad():
        out = model(torch.tensor([ctx], dtype=torch.long, device=dev), use_cache=True, logits_to_keep=1)
        first = F.log_softmax(out.logits[0, -1].float(), dim=-1)  # predicts every continuation's first token
        cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        longest = max(len(c) for c in conts)
        rest = None
        if longest > 1:  # the continuations' own tokens (all but the last) on top of the shared context
            batch = torch.zeros((len(conts), longest - 1), dtype=torch.long, device=dev)
            for b, c in enumerate(conts):
                batch[b, : len(c) - 1] = torch.tensor(c[:-1], dtype=torch.long)
            cache.batch_repeat_interleave(len(conts))
            kw = {_cache_kwarg(model): cache}
            rest = F.log_softmax(model(batch, use_cache=True, **kw).logits.float(), dim=-1)  # [B, longest-1, V]
    answers = []
    for b, c in enumerate(conts):
        logp = first.unsqueeze(0) if len(c) == 1 else torch.cat([first.unsqueeze(0), rest[b, : len(c) - 1]])
        toks = torch.tensor(c, dtype=torch.long, device=logp.device)
        answers.append((float(logp.gather(1, toks.unsqueeze(1)).sum()), bool((logp.argmax(dim=-1) == toks).all())))
    return answers


def _cache_kwarg(model) -> str:
    """The name the model's forward takes its KV cache under (``cache`` in transformers 5, else ``past_key_values``)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
