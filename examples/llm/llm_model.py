"""A small causal language model that streams its tokens, batched: one onnxruntime call advances every stream.

The model is made at start-up, not downloaded (there is no model hub here): a byte-level BPE tokenizer is
trained with `tokenizers` on the corpus of the model entry, a token-bigram language model is counted from the
same corpus (log-probabilities, unigram back-off for unseen tokens), and its table is written as an ONNX graph
(``Gather`` of the last token's row -> logits for the next token). Both are then loaded the way a real deployment
loads its files: ``Tokenizer.from_file(path)`` and ``onnxruntime.InferenceSession(path)``. Generation is real
autoregressive sampling (temperature, per-request seed) over the logits the session returns. It is a bigram model, not a
trained neural network: the text it writes is the corpus's word pairs recombined.
"""

from __future__ import annotations

import tempfile
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper
from pydantic import BaseModel, Field, field_validator
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from modalkit_pipeline import InferenceOutputModel, ItemError, StreamingPipeline

EOS = "<|endoftext|>"


class Prompt(BaseModel):
    """A prompt to continue."""

    text: str = Field(min_length=1, max_length=2000, description="The text to continue.")
    max_tokens: int = Field(default=32, ge=1, le=512, description="At most this many new tokens.")
    temperature: float = Field(default=0.8, ge=0.0, le=2.0, description="0 is greedy decoding.")
    seed: int = Field(default=0, ge=0, description="Sampling seed: the same prompt and seed give the same text.")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("text is blank: nothing to continue")
        return text


class Token(BaseModel):
    """One generated token, as it is made."""

    index: int = Field(description="Position among the generated tokens, from 0.")
    text: str = Field(description="The token's text (decoded bytes, with its leading space).")


class Completion(InferenceOutputModel):
    """The whole generation (``/predict_sync``, batches, async jobs)."""

    text: str
    tokens: int
    finish_reason: str = Field(description="'stop' (end-of-text token) or 'length' (max_tokens reached).")


def build_model(corpus: Sequence[str], folder: Path, vocab_size: int = 1000, smoothing: float = 1e-6) -> None:
    """Train the tokenizer and count the bigram model from ``corpus``; write tokenizer.json and model.onnx."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)  # "The" -> " The", as in the corpus
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([" " + line.strip() for line in corpus], trainer=trainer)
    tokenizer.save(str(folder / "tokenizer.json"))

    size = tokenizer.get_vocab_size()
    eos = tokenizer.token_to_id(EOS)
    ids = [token for line in corpus for token in tokenizer.encode(" " + line.strip()).ids]  # one running text
    ids.append(eos)
    counts = np.zeros((size, size), dtype=np.float64)
    np.add.at(counts, (ids[:-1], ids[1:]), 1.0)
    unseen = counts.sum(axis=1) == 0  # a token never followed by another backs off to the word frequencies
    counts[unseen] = np.bincount(ids[1:], minlength=size)
    counts += smoothing
    logits = np.log(counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)

    graph = helper.make_graph(
        [helper.make_node("Gather", ["bigram_logits", "input_ids"], ["logits"], axis=0)],
        "bigram_lm",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", size])],
        [numpy_helper.from_array(logits, "bigram_logits")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="modalkit-example")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))


class BigramLM:
    """The files on disk, loaded: ``next_logits(last_ids)`` is one model step for a whole batch."""

    def __init__(self, model_path: str | Path, tokenizer_path: str | Path) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.eos = self.tokenizer.token_to_id(EOS)

    def next_logits(self, last_ids: Sequence[int]) -> np.ndarray[Any, np.dtype[np.float32]]:
        [logits] = self.session.run(["logits"], {"input_ids": np.asarray(last_ids, dtype=np.int64)})
        return np.asarray(logits, dtype=np.float32)


def sample(logits: np.ndarray[Any, np.dtype[np.float32]], temperature: float, rng: np.random.Generator) -> int:
    """The next token: the most likely at temperature 0, else drawn from softmax(logits / temperature)."""
    if temperature == 0.0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / temperature
    probs = np.exp(scaled - scaled.max())
    return int(rng.choice(len(probs), p=probs / probs.sum()))


class LLMPipeline(StreamingPipeline[Prompt, Token, Completion]):
    """Token streaming with batched steps; the model entry gives the training ``corpus`` (a list of lines)."""

    def __init__(
        self, model_name: str, all_model_data_folder: str, common_settings: dict[str, Any], **kwargs: Any
    ) -> None:
        super().__init__(model_name, all_model_data_folder, common_settings, **kwargs)
        corpus = list(kwargs.get("corpus", []))
        if not corpus:
            raise ValueError(f"model entry {model_name!r} has no corpus: give it a list of training lines")
        with tempfile.TemporaryDirectory(prefix="modalkit-llm-") as files:  # loaded into memory, then removed
            folder = Path(files)
            build_model(corpus, folder, vocab_size=int(kwargs.get("vocab_size", 1000)))
            self.model = BigramLM(folder / "model.onnx", folder / "tokenizer.json")
        self.steps = 0  # model calls made, for tests and curiosity

    def preprocess(self, input_list: list[Prompt]) -> dict[str, Any]:
        return {"prompt_ids": [self.model.tokenizer.encode(p.text).ids for p in input_list]}

    def predict_stream(
        self, input_list: list[Prompt], preprocessed_data: dict[str, Any]
    ) -> Generator[Sequence[Token | ItemError | None], frozenset[int], None]:
        last = [ids[-1] if ids else self.model.eos for ids in preprocessed_data["prompt_ids"]]
        rngs = [np.random.default_rng(p.seed) for p in input_list]
        made = [0] * len(input_list)
        open_items = set(range(len(input_list)))
        while open_items:
            active = sorted(open_items)
            logits = self.model.next_logits([last[i] for i in active])  # one call for every open stream
            self.steps += 1
            step: list[Token | ItemError | None] = [None] * len(input_list)
            for row, i in enumerate(active):
                token = sample(logits[row], input_list[i].temperature, rngs[i])
                if token == self.model.eos:
                    open_items.discard(i)
                    continue
                step[i] = Token(index=made[i], text=self.model.tokenizer.decode([token]))
                last[i] = token
                made[i] += 1
                if made[i] >= input_list[i].max_tokens:
                    open_items.discard(i)
            cancelled = yield step
            open_items -= cancelled
            # A stream that reached max_tokens this step sent its last token above; the next step ends it.

    def join_chunks(self, item: Prompt, chunks: list[Token]) -> Completion:
        return Completion(
            text="".join(c.text for c in chunks),
            tokens=len(chunks),
            finish_reason="length" if len(chunks) >= item.max_tokens else "stop",
        )
