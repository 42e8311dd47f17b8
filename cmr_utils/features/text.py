"""The text encoder: a BERT-family model's hidden layer, attention-masked pooling, long texts in windows.

It feeds the model what it was trained on (text length, hidden layer; ``windows=False`` truncates, for
ablations) and reports it in ``config``, the part of the feature cache key that it owns. Nothing is
downloaded at run time: a model that is not on disk fails with a message that says what is missing.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from cmr_utils.features import runtimes
from cmr_utils.features.runtimes import device_of
from cmr_utils.features.weights import TEXT_MODELS, Shipped, model_folder, ticker
from cmr_utils.io import content_hash

LONG_TEXTS = {True: "windows overlapping by half, token-weighted mean", False: "truncated at max_length"}


class TextEncoder(Shipped):
    """A BERT-family encoder: one hidden layer, attention-masked pooling, long texts in windows.

    ``name`` is a bundled model (``minilm`` 384-d, ``mpnet`` 768-d), a Hugging Face id already in
    the local cache (``bert-base-uncased``, 768-d) or a folder written by ``save_pretrained``.
    ``layer`` and ``max_length`` None take the model's own: a sentence-transformers model (a folder
    with ``sentence_bert_config.json``: minilm, mpnet) was trained on its last layer's mean and up
    to ``max_seq_length`` word pieces (256, 384); for others (BERT) the paper's second-to-last
    layer and the tokenizer's limit (512). A longer text is encoded in windows of ``max_length``
    overlapping by half, and its vector is the mean over the windows weighted by their tokens,
    so every token counts and no window runs past the length the model was trained on; a text
    that fits one window gets exactly the plain encoding (``windows=False`` keeps only the first
    window: the truncation the windows replace, for ablations). Windows are sorted by length and
    batched so that padding stays small; on CUDA the model runs in float16.
    """

    def __init__(self, name: str = "minilm", layer: int | None = None, pooling: str = "mean",
                 max_length: int | None = None, batch_size: int = 32, device: str | None = None,
                 cache_dir: str | Path | None = None, windows: bool = True, backend: str = "auto",
                 precision: str = "float32"):
        from transformers import AutoModel, AutoTokenizer
        self.device = device_of(device)
        backend = runtimes.resolve(backend, self.device, "text")
        self._keep_args(name=name, layer=layer, pooling=pooling, max_length=max_length, batch_size=batch_size,
                        device=device, cache_dir=None if cache_dir is None else str(cache_dir), windows=windows,
                        backend=backend, precision=precision)
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        path = str(TEXT_MODELS[name](cache_dir)) if name in TEXT_MODELS else name
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as e:
            raise FileNotFoundError(
                f"Text model {name!r} is not available offline ({type(e).__name__}: {str(e)[:200]}). "
                f"Either put it in the Hugging Face cache (run `huggingface-cli download {name}` on a "
                "machine with internet and copy ~/.cache/huggingface, or set HF_HOME to that copy), or "
                "pass text_encoder=/path/to/folder holding config.json, the tokenizer files and the "
                "weights (as written by save_pretrained). text_encoder=minilm works offline.") from None
        sentence = Path(path, "sentence_bert_config.json")
        trained = json.loads(sentence.read_text())["max_seq_length"] if sentence.is_file() else \
            min(self.tokenizer.model_max_length, self.model.config.max_position_embeddings)
        self.name, self.pooling, self.batch_size, self.in_windows = name, pooling, batch_size, windows
        self.layer = layer if layer is not None else -1 if sentence.is_file() else -2
        self.weights = content_hash(model_folder(path), cache_dir)  # new files under the same name: new features
        self.max_length = max_length or trained
        self.dim, self.backend, self.precision = self.model.config.hidden_size, backend, precision
        example = (torch.ones((2, 8), dtype=torch.long),) * 2
        self.run = runtimes.build(_Pooled(self.model, self.layer, pooling), {"layer": self.layer, "pooling": pooling},
                                  example, [{0: "batch", 1: "tokens"}] * 2, backend, precision, self.device, cache_dir)

    @classmethod
    def like(cls, config: dict, **kwargs) -> "TextEncoder":
        """The encoder whose ``config`` this is (as a run's features.json stores it)."""
        return cls(config["name"], config["layer"], config["pooling"], config["max_length"],
                   windows=config.get("long_texts") != LONG_TEXTS[False],
                   backend=config.get("backend", "torch"), precision=config.get("precision", "float32"),
                   **kwargs).matching(config, "text")

    @property
    def config(self) -> dict:
        """Everything that changes the vectors: part of the feature cache key."""
        return {"name": self.name, "layer": self.layer, "pooling": self.pooling, "max_length": self.max_length,
                "long_texts": LONG_TEXTS[self.in_windows], "weights": self.weights, "backend": self.backend,
                "precision": self.precision}

    def windows(self, ids: list[int]) -> list[list[int]]:
        """Token ids of each window of a text, as BERT-family models read them ([CLS] ids [SEP]); one
        window if the text fits."""
        size, cls, sep = self.max_length - 2, self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        last = max(len(ids) - size, 0) if self.in_windows else 0
        return [[cls, *ids[s:s + size], sep] for s in [*range(0, last, max(size // 2, 1)), last]]

    def encode(self, texts: list[str], progress=True, bucket: bool = True) -> np.ndarray:
        """float32 array (len(texts), dim); rows follow ``texts`` whatever the batching order.

        ``bucket`` batches windows of similar token length together (less padding, same vectors).
        ``progress`` is a bool (a bar of its own) or a callable given the texts done after each batch.
        """
        total, weight = np.zeros((len(texts), self.dim)), np.zeros((len(texts), 1))
        if not texts:
            return total.astype(np.float32)
        ids = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        rows, windows = zip(*[(i, w) for i, t in enumerate(ids) for w in self.windows(t)])
        order = np.argsort([len(w) for w in windows], kind="stable") if bucket else np.arange(len(windows))
        ends = np.zeros(len(texts), np.int64)  # the position in ``order`` after which each text is complete
        ends[np.asarray(rows)[order]] = np.arange(1, len(order) + 1)
        done = np.bincount(ends, minlength=len(order) + 1).cumsum()
        with ticker(progress, len(texts), f"text {self.name}", "text") as tick:
            for start in range(0, len(windows), self.batch_size):
                idx = order[start:start + self.batch_size]
                longest = max(len(windows[j]) for j in idx)
                input_ids = np.full((len(idx), longest), self.tokenizer.pad_token_id, dtype=np.int64)
                mask = np.zeros((len(idx), longest), dtype=np.int64)
                for k, j in enumerate(idx):
                    input_ids[k, :len(windows[j])], mask[k, :len(windows[j])] = windows[j], 1
                np.add.at(total, [rows[j] for j in idx], self.run(input_ids, mask))
                np.add.at(weight, [rows[j] for j in idx], mask.sum(1, keepdims=True))
                tick(done[start + len(idx)] - done[start])
        return (total / weight).astype(np.float32)


class _Pooled(torch.nn.Module):
    """A text model's hidden ``layer`` summed over the attended tokens (``cls``: the first token times
    their number): the graph a runtime compiles; the encoder divides by the token counts."""

    def __init__(self, model, layer: int, pooling: str):
        super().__init__()
        self.model, self.layer, self.pooling = model, layer, pooling

    def forward(self, input_ids, attention_mask):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=True).hidden_states[self.layer].float()
        if self.pooling == "cls":
            return hidden[:, 0] * attention_mask.sum(1, keepdim=True).to(hidden.dtype)
        return (hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)).sum(1)
