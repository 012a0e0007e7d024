"""Convert the sentence-transformers MiniLM (BERT) checkpoint to GGUF, without torch.

llama.cpp runs BERT encoders natively; this writes the same file its own
``convert_hf_to_gguf.py`` would, using only ``safetensors``, ``numpy`` and ``gguf``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file

ARCH = gguf.MODEL_ARCH.BERT
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Buffers and the next-sentence head: not used for sentence embeddings.
SKIPPED = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")
F32_TABLES = ("embeddings.position_embeddings", "embeddings.token_type_embeddings")
POOLING = {
    "pooling_mode_mean_tokens": gguf.PoolingType.MEAN,
    "pooling_mode_cls_token": gguf.PoolingType.CLS,
}


def convert_minilm_to_gguf(model_dir: Path, out_path: Path) -> None:
    """Write ``model_dir`` (a sentence-transformers BERT folder) as a f16 GGUF at ``out_path``."""
    model_dir, out_path = Path(model_dir), Path(out_path)
    config = json.loads((model_dir / "config.json").read_text())
    pooling_config = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    modes = [k for k, on in pooling_config.items() if k.startswith("pooling_mode_") and on is True]
    if len(modes) != 1 or modes[0] not in POOLING:
        raise ValueError(f"unsupported pooling in {model_dir / '1_Pooling'}: {pooling_config}")
    # Split on "\n" only: str.splitlines() would also split inside tokens such as U+2028.
    vocab = (model_dir / "vocab.txt").read_text(encoding="utf-8").rstrip("\n").split("\n")
    if len(vocab) != config["vocab_size"]:
        raise ValueError(
            f"vocab.txt has {len(vocab)} tokens, config.json says {config['vocab_size']}"
        )

    n_layers = config["num_hidden_layers"]
    tmp_path = out_path.with_name(out_path.name + ".part")
    writer = gguf.GGUFWriter(tmp_path, gguf.MODEL_ARCH_NAMES[ARCH])
    try:
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        writer.add_block_count(n_layers)
        writer.add_context_length(config["max_position_embeddings"])
        writer.add_embedding_length(config["hidden_size"])
        writer.add_feed_forward_length(config["intermediate_size"])
        writer.add_head_count(config["num_attention_heads"])
        writer.add_layer_norm_eps(config["layer_norm_eps"])
        writer.add_causal_attention(False)  # an encoder: every token sees the whole input
        writer.add_pooling_type(POOLING[modes[0]])
        writer.add_token_type_count(config["type_vocab_size"])

        # llama.cpp's WordPiece tokenizer marks word starts with "▁" instead of marking
        # continuations with "##"; special tokens keep their names and are CONTROL tokens.
        types = [
            gguf.TokenType.CONTROL if t in SPECIAL_TOKENS else gguf.TokenType.NORMAL for t in vocab
        ]
        tokens = [
            t if t in SPECIAL_TOKENS else t[2:] if t.startswith("##") else "\u2581" + t
            for t in vocab
        ]
        writer.add_tokenizer_model("bert")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        ids = {t: vocab.index(t) for t in SPECIAL_TOKENS}
        writer.add_pad_token_id(ids["[PAD]"])
        writer.add_unk_token_id(ids["[UNK]"])
        writer.add_bos_token_id(ids["[CLS]"])  # llama.cpp's "bos" is BERT's [CLS] ...
        writer.add_eos_token_id(ids["[SEP]"])  # ... and its "eos" is [SEP]
        writer.add_sep_token_id(ids["[SEP]"])
        writer.add_mask_token_id(ids["[MASK]"])
        writer.add_add_bos_token(True)  # so tokenize() gives [CLS] ... [SEP] like HF
        writer.add_add_eos_token(True)

        names = gguf.get_tensor_name_map(ARCH, n_layers)
        for name, data in load_file(model_dir / "model.safetensors").items():
            name = name.removeprefix("bert.")
            if name in SKIPPED:
                continue
            gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
            if gguf_name is None:
                raise ValueError(f"no GGUF name for tensor {name!r}")
            # As llama.cpp's own converter: weight matrices in f16 (half the size, cosine to
            # the f32 model > 0.99999); vectors and the position / token-type tables, which
            # are added to activations rather than multiplied, stay f32.
            keep_f32 = data.ndim < 2 or name.startswith(F32_TABLES)
            writer.add_tensor(gguf_name, data.astype(np.float32 if keep_f32 else np.float16))

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, out_path)  # atomic: a crash never leaves a half-written model
    except BaseException:
        writer.close()
        tmp_path.unlink(missing_ok=True)
        raise
