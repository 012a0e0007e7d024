"""Sentence embeddings (all-MiniLM-L6-v2, converted by ``agent.minilm_gguf``) through llama.cpp.

The vectors match sentence-transformers' ``encode(..., normalize_embeddings=True)``:
same WordPiece ids, same 256-token truncation, mean pooling, unit length.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from pathlib import Path

import llama_cpp
import numpy as np

from agent.llama_loading import load_llama

MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
N_CTX = 512  # the model's position table: a context may not be longer


class Embedder:
    """Turns texts into unit-length float32 vectors of ``dim`` numbers.

    One llama.cpp context, which is not safe to share between threads: ``embed`` holds a
    lock, because besides the node's model queue a skill's search (through the broker)
    embeds its query on the broker's thread.
    """

    def __init__(self, gguf_path: Path, n_threads: int | None = None) -> None:
        self._llama = load_llama(
            model_path=str(gguf_path),
            embedding=True,
            n_ctx=N_CTX,
            n_batch=N_CTX,
            n_ubatch=N_CTX,  # an encoder needs each whole input inside one micro-batch
            n_threads=n_threads,
            n_threads_batch=n_threads,  # decoding several tokens at once uses this count
            verbose=False,  # also silences llama.cpp's own log lines on stderr
        )
        if self._llama.pooling_type() != llama_cpp.LLAMA_POOLING_TYPE_MEAN:
            raise ValueError(f"{gguf_path} is not a mean-pooled sentence embedding model")
        self.dim: int = self._llama.n_embd()
        self._sep = llama_cpp.llama_vocab_sep(llama_cpp.llama_model_get_vocab(self._llama.model))
        # Our own batch rather than Llama.embed(): embed() tokenizes the text itself and,
        # when it cuts an input, drops the final [SEP] that sentence-transformers keeps.
        self._batch = llama_cpp.llama_batch_init(MAX_TOKENS, 0, 1)
        self._lock = threading.Lock()
        weakref.finalize(self, llama_cpp.llama_batch_free, self._batch)

    def tokenize(self, text: str) -> list[int]:
        """The token ids the model sees for ``text``: [CLS] … [SEP], at most 256.

        Text such as "[SEP]" inside ``text`` stays plain text (Hugging Face would read it
        as the special token): what an owner writes never steers the model's framing.
        """
        ids = self._llama.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        if len(ids) > MAX_TOKENS:
            ids = ids[: MAX_TOKENS - 1] + [self._sep]
        return ids

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``; returns an array of shape (len(texts), dim), float32, rows of norm 1."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # One text per decode: llama.cpp attends across everything in a decode, so packing
        # several texts into one was slower on CPU (measured, 1 thread: 70 short sentences/s
        # packed into 512 tokens against 145/s one at a time).
        with self._lock:
            for row, text in enumerate(texts):
                out[row] = self._mean_pooled(self.tokenize(text))
        # sentence-transformers' last step; llama.cpp returns the plain mean (norm ≈ 5.7).
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text; returns a float32 vector of shape (dim,) and norm 1."""
        return self.embed([text])[0]

    def _mean_pooled(self, ids: list[int]) -> np.ndarray:
        batch, ctx = self._batch, self._llama.ctx
        for pos, token in enumerate(ids):
            batch.token[pos], batch.pos[pos], batch.logits[pos] = token, pos, True
            batch.n_seq_id[pos], batch.seq_id[pos][0] = 1, 0
        batch.n_tokens = len(ids)
        memory = llama_cpp.llama_get_memory(ctx)
        if memory:  # encoders usually have no KV cache; clear one if this build made it
            llama_cpp.llama_memory_clear(memory, True)
        if (rc := llama_cpp.llama_decode(ctx, batch)) != 0:
            raise RuntimeError(f"llama_decode failed with code {rc}")
        pooled = llama_cpp.llama_get_embeddings_seq(ctx, 0)
        if not pooled:
            raise RuntimeError("llama.cpp returned no pooled embedding")
        return np.ctypeslib.as_array(
            ctypes.cast(pooled, ctypes.POINTER(ctypes.c_float)), shape=(self.dim,)
        )
