"""Memory needs of the real generator families, computed from their published configs.

Builds Janus-Pro 1B, Janus-Pro 7B and Emu3-Gen (8B) on the ``meta`` device (shapes only, no
weights, no download), counts parameters, and prints what sampling and LoRA alignment need:

- weights in bf16 (2 bytes a parameter);
- LoRA (r=16 on q/k/v/o/gate/up/down of the language model): fp32 parameters, gradients and
  two AdamW moments, 16 bytes a LoRA parameter;
- the KV cache of one image with batched classifier-free guidance (two rows);
- activations of one training sequence, rough: with activation checkpointing one hidden state
  per layer is kept, plus one layer's working set recomputed, plus the fp32 log-softmax over
  the image head at the image positions (the whole 184,622-token vocabulary for Emu3, the
  16,384-code generation head for Janus). DPO holds two sequences (chosen, rejected) per pair.

Run: ``.venv/bin/python benchmarks/family_memory.py``. The config numbers are those of the
transformers conversions (deepseek-community/Janus-Pro-1B and -7B, BAAI/Emu3-Gen-hf).
"""

from __future__ import annotations

import torch
from transformers import Emu3Config, Emu3ForConditionalGeneration, JanusConfig, JanusForConditionalGeneration

GIB = 1024**3
LORA_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PROMPT_TOKENS = 64


def janus_config(size: str) -> JanusConfig:
    """Janus-Pro 1B or 7B: a DeepSeek-LLM language model, SigLIP-L encoder, 16,384-code VQ (24x24)."""
    width, intermediate, layers, heads = {"1B": (2048, 5632, 24, 16), "7B": (4096, 11008, 30, 32)}[size]
    text = dict(
        model_type="llama",
        vocab_size=102400,
        hidden_size=width,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=16384,
    )
    vision = dict(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=384,
        patch_size=16,
        projection_dim=width,
        depth=2,
        num_image_tokens=576,
    )
    vq = dict(
        embed_dim=8,
        num_embeddings=16384,
        latent_channels=256,
        base_channels=128,
        channel_multiplier=[1, 1, 2, 2, 4],
        projection_dim=width,
        image_token_embed_dim=width,
        num_hidden_layers=2,
    )
    # The released Janus-Pro checkpoints keep a separate lm_head (2.09 B and 7.42 B parameters in all).
    return JanusConfig(text_config=text, vision_config=vision, vq_config=vq, tie_word_embeddings=False)


def emu3_config() -> Emu3Config:
    """Emu3-Gen: an 8B Llama-like model over 184,622 tokens, 32,768-code VQ, 720x720 images (90x90 codes)."""
    vocab = {f"<|visual token {i:06d}|>": 151854 + i for i in range(32768)}
    vocab["<|extra_200|>"] = 151846
    return Emu3Config(text_config=dict(), vq_config=dict(), vocabulary_map=vocab)


def lora_parameters(module: torch.nn.Module, inside: str, rank: int = 16) -> int:
    """LoRA parameters of rank ``rank`` on the named projections of the language model."""
    total = 0
    for name, child in module.named_modules():
        if inside in name and name.rsplit(".", 1)[-1] in LORA_NAMES and isinstance(child, torch.nn.Linear):
            total += rank * (child.in_features + child.out_features)
    return total


def figures(name: str, model: torch.nn.Module, text, inside: str, image_tokens: int, head_size: int) -> dict:
    """The memory figures of one family at one size (see the module docstring for each)."""
    parameters = sum(p.numel() for p in model.parameters())
    language = sum(p.numel() for n, p in model.named_parameters() if inside in n or "lm_head" in n)
    lora = lora_parameters(model, inside)
    sequence = PROMPT_TOKENS + image_tokens
    head_dim = text.hidden_size // text.num_attention_heads
    kv_cache = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * sequence * 2 * 2  # k+v, bf16, CFG
    kept = text.num_hidden_layers * sequence * text.hidden_size * 2
    working = sequence * (6 * text.hidden_size + 3 * text.intermediate_size) * 2
    logsoftmax = image_tokens * head_size * 4 * 2  # fp32 logits and their log-softmax
    activations = kept + working + logsoftmax
    weights = parameters * 2
    optimizer = lora * 16
    return {
        "model": name,
        "params_b": parameters / 1e9,
        "lm_params_b": language / 1e9,
        "weights_gib": weights / GIB,
        "lora_m": lora / 1e6,
        "lora_optimizer_gib": optimizer / GIB,
        "sequence": sequence,
        "kv_cache_gib": kv_cache / GIB,
        "activations_gib": activations / GIB,
        "sample_gib": (weights + 8 * kv_cache) / GIB,
        "dpo_pair_gib": (weights + optimizer + 2 * activations) / GIB,
    }


def main() -> None:
    rows = []
    with torch.device("meta"):
        for size in ("1B", "7B"):
            config = janus_config(size)
            model = JanusForConditionalGeneration(config)
            rows.append(
                figures(
                    f"Janus-Pro {size}",
                    model,
                    config.text_config,
                    "language_model",
                    config.vision_config.num_image_tokens,
                    config.vq_config.num_embeddings,
                )
            )
        config = emu3_config()
        model = Emu3ForConditionalGeneration(config)
        rows.append(
            figures("Emu3-Gen", model, config.text_config, "text_model", 90 * 91 + 3, config.text_config.vocab_size)
        )
    header = (
        "| model | params | LM params | bf16 weights | LoRA r=16 | LoRA optimizer | tokens/image seq | "
        "KV cache/image (CFG) | activations/seq | sample 8 images | DPO 1 pair |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in rows:
        print(
            f"| {r['model']} | {r['params_b']:.2f} B | {r['lm_params_b']:.2f} B | {r['weights_gib']:.1f} GiB | "
            f"{r['lora_m']:.1f} M | {r['lora_optimizer_gib']:.2f} GiB | {r['sequence']} | "
            f"{r['kv_cache_gib']:.2f} GiB | {r['activations_gib']:.1f} GiB | {r['sample_gib']:.1f} GiB | "
            f"{r['dpo_pair_gib']:.1f} GiB |"
        )


if __name__ == "__main__":
    main()
