"""The streaming contract: a pipeline whose model advances every stream of a batch one step per call."""

from __future__ import annotations

import typing
from abc import abstractmethod
from collections.abc import Generator, Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from modalkit_pipeline._iomodels import ItemError
from modalkit_pipeline._pipeline import InferencePipeline
from modalkit_pipeline.errors import PipelineError, StreamContractError

InputT = TypeVar("InputT", bound=BaseModel)
ChunkT = TypeVar("ChunkT", bound=BaseModel)
OutputT = TypeVar("OutputT", bound=BaseModel)

StreamStep = Sequence[ChunkT | ItemError | None]
"""One step of a batch's streams: one entry per input, in input order (see `StreamingPipeline.predict_stream`)."""

StreamEvent = tuple[int, ChunkT | ItemError | None]
"""What `StreamingPipeline.run_stream` yields: an input's position and its chunk, its error, or ``None`` (done)."""


class StreamingPipeline(InferencePipeline[InputT, OutputT], Generic[InputT, ChunkT, OutputT]):
    """A pipeline that yields its output piece by piece (tokens, audio frames, partial results).

    Subclass it as ``class MyPipeline(StreamingPipeline[MyInput, MyChunk, MyOutput])`` and implement
    `preprocess`, `predict_stream` and `join_chunks`. One step of `predict_stream` is one model call over the
    whole batch and advances every stream in it, as continuous batching does for LLMs. ``/predict_stream``
    sends each chunk as it comes; the other routes and async jobs get `join_chunks` of an input's chunks, so
    `predict` and `postprocess` are provided.
    """

    @abstractmethod
    def predict_stream(
        self, input_list: list[InputT], preprocessed_data: dict[str, Any]
    ) -> Generator[StreamStep[ChunkT], frozenset[int], None]:
        """Run the model step by step; yield one entry per input for each step.

        An entry is the input's next chunk, ``None`` when that input's stream has finished, or
        ``self.item_error(...)`` to end that stream with an error. Entries of a finished stream are ignored.
        Returning ends every stream still open. The value each ``yield`` returns is the set of input positions
        whose stream was cancelled (the client went away): stop working on them.
        """

    @abstractmethod
    def join_chunks(self, item: InputT, chunks: list[ChunkT]) -> OutputT | ItemError:
        """The single output of one input, from all its chunks (for ``/predict_sync``, batches and async jobs)."""

    def run_steps(self, input_list: list[InputT]) -> Generator[list[StreamEvent[ChunkT]], frozenset[int] | None, None]:
        """Run preprocess -> predict_stream over one batch, one model call per step, checking each step.

        Yields, per step, the ``(index, event)`` pairs of the streams still open: a chunk, ``None`` when that
        stream finished, or an `ItemError` when it failed; a last list ends, with ``None``, the streams the
        model left open when it returned. The next model call happens only when the caller asks for the next
        step, so nothing is computed ahead of a slow reader. Send the positions cancelled since the last step
        (or nothing): they get no further events, and the model is told at its next step.

        Raises:
            StreamContractError: a step had the wrong number of entries or an entry of the wrong type.
        """
        if not input_list:
            return
        chunk_model = type(self).chunk_model()
        open_items = set(range(len(input_list)))
        cancelled: frozenset[int] = frozenset()
        steps = self.predict_stream(input_list, self.preprocess(input_list))
        try:
            step = next(steps)
            while True:
                events = self._check_step(list(step), len(input_list), chunk_model, open_items)
                sent = yield events
                if sent:
                    cancelled = cancelled | sent
                    open_items -= sent
                if not open_items:
                    return
                step = steps.send(cancelled)
        except StopIteration:
            pass
        finally:
            steps.close()
        if open_items:
            yield [(i, None) for i in sorted(open_items)]

    def _check_step(
        self, step: list[Any], n: int, chunk_model: type[BaseModel], open_items: set[int]
    ) -> list[StreamEvent[ChunkT]]:
        if len(step) != n:
            raise StreamContractError(
                f"{type(self).__name__}.predict_stream yielded {len(step)} "
                f"entr{'y' if len(step) == 1 else 'ies'} for {n} inputs; "
                "a step must have exactly one entry per input, in order"
            )
        events: list[StreamEvent[ChunkT]] = []
        for i, entry in enumerate(step):
            if entry is not None and not isinstance(entry, chunk_model | ItemError):
                raise StreamContractError(
                    f"{type(self).__name__}.predict_stream yielded {type(entry).__name__} for input {i}; "
                    f"expected {chunk_model.__name__}, ItemError or None"
                )
            if i not in open_items:
                continue
            if not isinstance(entry, chunk_model):
                open_items.discard(i)
            events.append((i, entry))  # type: ignore[arg-type]  # checked just above: a ChunkT, ItemError or None
        return events

    def run_stream(self, input_list: list[InputT]) -> Generator[StreamEvent[ChunkT], frozenset[int] | None, None]:
        """Like `run_steps`, one event at a time: ``(index, chunk)``, then ``(index, None)`` or ``(index, ItemError)``.

        Send the set of cancelled positions into it (or nothing) after any event: they get no further events
        and the model is told at its next step.

        Raises:
            StreamContractError: a step had the wrong number of entries or an entry of the wrong type.
        """
        cancelled: frozenset[int] = frozenset()
        steps = self.run_steps(input_list)
        try:
            events = next(steps)
            while True:
                new: frozenset[int] = frozenset()
                for i, event in events:
                    if i in cancelled:
                        continue
                    sent = yield i, event
                    if sent:
                        new = new | sent
                        cancelled = cancelled | sent
                events = steps.send(new)
        except StopIteration:
            pass
        finally:
            steps.close()

    def predict(self, input_list: list[InputT], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError("a StreamingPipeline runs through run_stream; run_inference joins its chunks")

    def postprocess(self, input_list: list[InputT], raw_output: dict[str, Any]) -> list[OutputT | ItemError]:
        chunks: list[list[ChunkT]] = raw_output["chunks"]
        errors: dict[int, ItemError] = raw_output["errors"]
        return [errors[i] if i in errors else self.join_chunks(item, chunks[i]) for i, item in enumerate(input_list)]

    def run_inference(self, input_list: list[InputT]) -> list[OutputT | ItemError]:
        """Run the whole stream and join each input's chunks into its one output."""
        chunks: list[list[ChunkT]] = [[] for _ in input_list]
        errors: dict[int, ItemError] = {}
        for i, event in self.run_stream(input_list):
            if isinstance(event, ItemError):
                errors[i] = event
            elif event is not None:
                chunks[i].append(event)
        return self.postprocess(input_list, {"chunks": chunks, "errors": errors})

    @classmethod
    def is_streaming(cls) -> bool:
        return True

    @classmethod
    def io_models(cls) -> tuple[type[BaseModel], type[BaseModel]]:
        models = cls._stream_models()
        return models[0], models[2]

    @classmethod
    def chunk_model(cls) -> type[BaseModel]:
        """The model of one chunk, as declared in ``StreamingPipeline[In, Chunk, Out]``."""
        return cls._stream_models()[1]

    @classmethod
    def _stream_models(cls) -> tuple[type[BaseModel], type[BaseModel], type[BaseModel]]:
        for klass in cls.__mro__:
            for base in getattr(klass, "__orig_bases__", ()):
                if typing.get_origin(base) is StreamingPipeline:
                    args = typing.get_args(base)
                    if len(args) == 3 and all(isinstance(a, type) and issubclass(a, BaseModel) for a in args):
                        return args[0], args[1], args[2]
        raise PipelineError(
            f"{cls.__name__} does not declare its models: write `class {cls.__name__}"
            "(StreamingPipeline[InputModel, ChunkModel, OutputModel])` with three pydantic models"
        )
