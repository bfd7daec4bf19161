"""A lean decode loop for Llama-shaped decoders: preallocated KV cache, no per-step framework work.

Why this exists: sampling an image is one forward pass per image token, with one new token per
row. For the small and mid-sized generators this toolkit aligns, each of those passes through
``transformers`` spends more time in per-call machinery (output dataclasses, kwarg decorators,
causal-mask construction, a growing ``DynamicCache`` that re-concatenates keys and values) than
in matrix multiplies (``benchmarks/sampler.py`` prints the share of the machine's matmul FLOP/s
the sampler reaches). ``transformers``' own remedy, ``StaticCache`` with ``torch.compile``, pays a
compilation per batch shape, which costs more than a whole sampling run on CPU. This module runs the
*same modules* of the model (its norms, projections, MLP, rotary embedding and head, so LoRA
adapters and any dtype work unchanged) over a key/value buffer allocated once per batch, with the
attention mask built once.

Only decoder layers whose forward is exactly the Llama computation are accepted (``SUPPORTED``);
anything else, or a family that overrides ``Generator.forward`` / ``embed_block`` (Janus), samples
through the generic path. ``tests/policy/test_sampler.py`` checks both paths give the same tokens
and log-probs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

if TYPE_CHECKING:
    # Only for annotations: the generator reaches this module through the sampler.
    from imagepref.policy.generator import Generator

# Decoder layers whose forward is: x + attn(norm(x)), then x + mlp(norm(x)), with Llama attention
# (q/k/v/o projections, rotary embedding, no q/k norms). Emu3's layer adds a dropout after each
# branch, which we call as well.
SUPPORTED = ("LlamaDecoderLayer", "Emu3DecoderLayer")


def _pieces(generator: Generator):
    """(decoder, head) when the generator's model can take the lean path, else None."""
    if generator.overrides("forward", "embed_block", "prompt_embeds"):
        return None
    model = generator.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft wrapper
    try:
        decoder, head = base.get_decoder(), base.get_output_embeddings()
    except (AttributeError, ValueError):
        return None
    layers = getattr(decoder, "layers", None)
    if head is None or layers is None or not all(type(layer).__name__ in SUPPORTED for layer in layers):
        return None
    if any(hasattr(layer.self_attn, "q_norm") for layer in layers) or not hasattr(decoder, "rotary_emb"):
        return None
    if getattr(decoder.config, "sliding_window", None) or getattr(base.config, "final_logit_softcapping", None):
        return None
    return decoder, head


def _effective_weight(module: nn.Module) -> torch.Tensor | None:
    """The weight a bias-free linear projection applies, LoRA adapters included; None if unknown.

    peft's LoRA ``Linear`` adds ``scale * B @ A`` (``get_delta_weight``) for each active adapter
    unless its adapters are disabled or already merged; dropout on the adapter input is not
    representable, so a layer in training mode with LoRA dropout is left to its modules."""
    if type(module) is nn.Linear:
        return module.weight if module.bias is None else None
    base = getattr(module, "base_layer", None)
    if type(base) is not nn.Linear or base.bias is not None or not hasattr(module, "lora_A"):
        return None
    if module.disable_adapters or module.merged:
        return base.weight
    weight = base.weight
    for name in module.active_adapters:
        if name not in module.lora_A:
            continue
        dropout = module.lora_dropout[name]
        if module.use_dora.get(name) or (module.training and not isinstance(dropout, nn.Identity)):
            return None
        weight = weight + module.get_delta_weight(name).to(weight.dtype)
    return weight


class StaticDecoder:
    """Prefill and one-token decode steps over a key/value buffer of fixed length.

    ``rows`` prompts, left-padded to ``prompt_length``, followed by at most ``new_tokens`` tokens.
    """

    def __init__(self, decoder: nn.Module, head: nn.Module, rows: int, prompt_length: int, new_tokens: int):
        self.decoder, self.head = decoder, head
        self.layers = list(decoder.layers)
        # Emu3's layers apply a dropout after each branch (a no-op in eval mode); Llama's have none.
        self.dropouts = [getattr(layer, "dropout", None) or nn.Identity() for layer in self.layers]
        attn = self.layers[0].self_attn
        weight = attn.o_proj.weight
        self.heads = decoder.config.num_attention_heads
        self.kv_heads = decoder.config.num_key_value_heads
        self.head_dim = attn.head_dim
        self.length = prompt_length + new_tokens
        shape = (rows, self.kv_heads, self.length, self.head_dim)
        self.keys = [weight.new_zeros(shape) for _ in self.layers]
        self.values = [weight.new_zeros(shape) for _ in self.layers]
        self.dtype, self.device = weight.dtype, weight.device
        self.filled = 0
        self.key_mask: torch.Tensor | None = None
        # Each layer's projections become plain weight matrices once per batch (LoRA deltas folded
        # in, q/k/v and gate/up concatenated), so a token costs four matrix multiplies a layer
        # instead of seven, or of twenty-one with adapters on every projection.
        self.qkv_sizes = [m.weight.shape[0] for m in (attn.q_proj, attn.k_proj, attn.v_proj)]
        self.projections = [self._projections(layer) for layer in self.layers]

    @staticmethod
    def _projections(layer: nn.Module) -> tuple[Callable, Callable, Callable]:
        """(qkv, o, mlp) of ``layer`` as functions of their input. When every projection is a
        bias-free ``nn.Linear`` or one under peft LoRA, they use the weights as they act now,
        concatenated; otherwise (an unknown wrapper, LoRA dropout in training) the modules run."""
        attn, mlp = layer.self_attn, layer.mlp
        weights = [
            _effective_weight(m)
            for m in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj)
        ]
        if any(w is None for w in weights):
            return (lambda x: torch.cat([attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)], dim=-1), attn.o_proj, mlp)
        q, k, v, o, gate, up, down = weights
        qkv, gate_up = torch.cat([q, k, v]), torch.cat([gate, up])

        def gated_mlp(x: torch.Tensor) -> torch.Tensor:
            gate_x, up_x = F.linear(x, gate_up).chunk(2, dim=-1)
            return F.linear(mlp.act_fn(gate_x) * up_x, down)

        return (lambda x: F.linear(x, qkv)), (lambda x: F.linear(x, o)), gated_mlp

    @classmethod
    def for_generator(
        cls, generator: Generator, rows: int, prompt_length: int, new_tokens: int
    ) -> StaticDecoder | None:
        """A decoder for ``generator``, or None when its model must take the generic path."""
        pieces = _pieces(generator)
        return None if pieces is None else cls(*pieces, rows, prompt_length, new_tokens)

    def prefill(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        """Run the left-padded prompts; returns the logits at their last position.

        Identical rows (the unconditional rows of guidance, a prompt asked for several images) are
        run once and their keys and values copied: the prefill is then no dearer than one pass over
        the distinct prompts.
        """
        rows, width = input_ids.shape
        blocked = torch.finfo(self.dtype).min
        # Keys a row may never attend to (its left padding), over the whole buffer, made once.
        keys_ok = torch.ones(rows, self.length, dtype=torch.bool, device=self.device)
        keys_ok[:, :width] = attention_mask.bool()
        self.key_mask = torch.zeros(rows, 1, 1, self.length, dtype=self.dtype, device=self.device)
        self.key_mask.masked_fill_(~keys_ok[:, None, None, :], blocked)
        _, inverse = torch.unique(torch.cat([input_ids, attention_mask], 1), dim=0, return_inverse=True)
        first = torch.full((int(inverse.max()) + 1,), rows, dtype=torch.long, device=self.device)
        first = first.scatter_reduce(0, inverse, torch.arange(rows, device=self.device), "amin")
        causal = torch.ones(width, width, dtype=torch.bool, device=self.device).tril()
        mask = self.key_mask[first, ..., :width].masked_fill(~causal, blocked)
        embeds = self.decoder.embed_tokens(input_ids[first])
        return self._forward(embeds, position_ids[first], mask, inverse)[inverse]

    def step(self, token: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (``token``: (rows,)); returns the next logits, (rows, vocab)."""
        embeds = self.decoder.embed_tokens(token[:, None])
        return self._forward(embeds, position_ids, self.key_mask[..., : self.filled + 1])

    def window(
        self,
        tokens: torch.Tensor,
        position_ids: torch.Tensor,
        columns: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Feed a window of tokens per row at buffer columns of the row's own (``tokens``,
        ``position_ids``, ``columns``: (rows, width)); returns the logits at every window
        position, (rows, width, vocab).

        Each query sees the row's prompt and the columns up to its own, so rows may stand at
        different places in the block (speculative decoding accepts a different number of drafts
        per row), and columns past a row's accepted prefix are simply written over next time.
        ``valid`` (rows, width), when given, marks the tokens to run: the others cost nothing in
        the projections (rows may feed windows of different lengths, or none), write nothing to
        the buffer, and get zero logits."""
        if int(columns.max()) >= self.length:
            raise RuntimeError(f"the static cache holds {self.length} positions")
        reachable = torch.arange(self.length, device=self.device)[None, None, :] <= columns[:, :, None]
        mask = self.key_mask.expand(-1, -1, tokens.shape[1], -1)
        mask = mask.masked_fill(~reachable[:, None], torch.finfo(self.dtype).min)
        if valid is not None and not bool(valid.all()):
            return self._packed_window(tokens, position_ids, columns, mask, valid)
        return self._forward(self.decoder.embed_tokens(tokens), position_ids, mask, columns=columns)

    def _packed_window(
        self,
        tokens: torch.Tensor,
        position_ids: torch.Tensor,
        columns: torch.Tensor,
        mask: torch.Tensor,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """``window`` over the ``valid`` tokens only: the projections and the MLP run on those
        tokens packed into one sequence (their cost is what grows with the tokens fed), the
        attention on the padded (rows, width) layout, whose padding costs little at these sizes."""
        rows, width = tokens.shape
        flat = valid.reshape(-1).nonzero()[:, 0]
        count = flat.shape[0]
        row_of, column_of = flat // width, columns.reshape(-1)[flat]
        hidden = self.decoder.embed_tokens(tokens.reshape(-1)[flat])[None]
        cos, sin = self.decoder.rotary_emb(hidden, position_ids.reshape(-1)[flat][None])
        state = zip(self.layers, self.dropouts, self.projections, self.keys, self.values)
        for layer, dropout, (qkv, o_proj, mlp), keys, values in state:
            q, k, v = qkv(layer.input_layernorm(hidden)).split(self.qkv_sizes, dim=-1)
            q, k = apply_rotary_pos_emb(
                q.view(1, count, -1, self.head_dim).transpose(1, 2),
                k.view(1, count, -1, self.head_dim).transpose(1, 2),
                cos,
                sin,
            )
            keys[row_of, :, column_of] = k[0].transpose(0, 1)
            values[row_of, :, column_of] = v.view(count, -1, self.head_dim)
            queries = q.new_zeros(rows * width, self.heads, self.head_dim).index_copy_(0, flat, q[0].transpose(0, 1))
            out = F.scaled_dot_product_attention(
                queries.view(rows, width, self.heads, self.head_dim).transpose(1, 2),
                keys,
                values,
                attn_mask=mask,
                scale=layer.self_attn.scaling,
                enable_gqa=self.heads != self.kv_heads,
            )
            out = out.transpose(1, 2).reshape(rows * width, -1)[flat][None]
            hidden = hidden + dropout(o_proj(out))
            hidden = hidden + dropout(mlp(layer.post_attention_layernorm(hidden)))
        logits = self.head(self.decoder.norm(hidden))[0]
        return logits.new_zeros(rows * width, logits.shape[-1]).index_copy_(0, flat, logits).view(rows, width, -1)

    def _forward(
        self,
        hidden: torch.Tensor,
        position_ids: torch.Tensor,
        mask: torch.Tensor,
        scatter: torch.Tensor | None = None,
        columns: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the layers on ``hidden``: one new token per buffer row, or (prefill, ``scatter``
        given) whole prompts of distinct rows whose keys and values go to buffer rows ``scatter``,
        or (``columns`` given) a window per row whose keys and values go to those columns."""
        start, width = self.filled, hidden.shape[1]
        end = start + width
        if columns is None and (end > self.length or (width > 1 and start)):
            raise RuntimeError(f"the static cache holds {self.length} positions from a single prefill")
        rows = hidden.shape[0]
        cos, sin = self.decoder.rotary_emb(hidden, position_ids)
        state = zip(self.layers, self.dropouts, self.projections, self.keys, self.values)
        for layer, dropout, (qkv, o_proj, mlp), keys, values in state:
            q, k, v = qkv(layer.input_layernorm(hidden)).split(self.qkv_sizes, dim=-1)
            q, k = apply_rotary_pos_emb(
                q.view(rows, width, -1, self.head_dim).transpose(1, 2),
                k.view(rows, width, -1, self.head_dim).transpose(1, 2),
                cos,
                sin,
            )
            v = v.view(rows, width, -1, self.head_dim).transpose(1, 2)
            scaling = layer.self_attn.scaling
            if columns is not None:
                row = torch.arange(rows, device=self.device)[:, None]
                keys[row, :, columns], values[row, :, columns] = k.transpose(1, 2), v.transpose(1, 2)
                out = F.scaled_dot_product_attention(
                    q, keys, values, attn_mask=mask, scale=scaling, enable_gqa=self.heads != self.kv_heads
                )
                out = out.transpose(1, 2).reshape(rows, width, -1)
            elif scatter is None:
                keys[:, :, start:end], values[:, :, start:end] = k, v
                out = self._attend_one(q, keys[:, :, :end], values[:, :, :end], mask, scaling)
            else:
                keys[:, :, :end], values[:, :, :end] = k[scatter], v[scatter]
                out = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, scale=scaling, enable_gqa=self.heads != self.kv_heads
                )
                out = out.transpose(1, 2).reshape(rows, width, -1)
            hidden = hidden + dropout(o_proj(out))
            hidden = hidden + dropout(mlp(layer.post_attention_layernorm(hidden)))
        if columns is not None:
            return self.head(self.decoder.norm(hidden))
        self.filled = end
        return self.head(self.decoder.norm(hidden[:, -1]))

    def _attend_one(self, q, keys, values, mask, scale) -> torch.Tensor:
        """Attention of one query per row: two batched matmuls. For a single query, this beats
        ``scaled_dot_product_attention``'s CPU kernel, whose per-call set-up dominates at this size."""
        rows = q.shape[0]
        groups = self.heads // self.kv_heads  # query heads sharing one key/value head
        q = q.reshape(rows, self.kv_heads, groups, self.head_dim)
        scores = torch.matmul(q, keys.transpose(-1, -2)) * scale + mask  # (rows, kv_heads, groups, length)
        out = torch.matmul(torch.softmax(scores.float(), dim=-1).to(values.dtype), values)
        return out.reshape(rows, 1, self.heads * self.head_dim)
