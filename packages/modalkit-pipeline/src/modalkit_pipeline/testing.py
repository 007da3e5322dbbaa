"""Run a pipeline in a test with no server and no config file.

Example::

    from modalkit_pipeline.testing import run_pipeline

    def test_sentiment():
        [out] = run_pipeline(SentimentPipeline, [{"text": "I love it"}])
        assert out.label == "positive"
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from modalkit_pipeline._iomodels import ItemError
from modalkit_pipeline._pipeline import InferencePipeline
from modalkit_pipeline._streaming import StreamingPipeline

OutputT = TypeVar("OutputT", bound=BaseModel)


def run_pipeline(
    pipeline_cls: type[InferencePipeline[Any, OutputT]],
    inputs: Sequence[BaseModel | Mapping[str, Any]],
    *,
    model_name: str = "test-model",
    model_entry: Mapping[str, Any] | None = None,
    common: Mapping[str, Any] | None = None,
    model_folder: str = ".",
) -> list[OutputT | ItemError]:
    """Build the pipeline as the server would and run one batch through it.

    Args:
        pipeline_cls: The pipeline class.
        inputs: Input models, or dicts validated against the pipeline's input model.
        model_name: Passed as ``model_name``.
        model_entry: The model entry's settings (keyword arguments of the constructor).
        common: ``common_settings``.
        model_folder: ``all_model_data_folder``.

    Returns:
        One output (or `ItemError`) per input, in order.

    Raises:
        ValueError: an input does not validate; the message names its index and field.
        TypeError: an output is not an instance of the declared output model or `ItemError`.
        OutputCountError: the pipeline returned a different number of outputs.
    """
    input_model, output_model = pipeline_cls.io_models()
    items = _validate_inputs(input_model, inputs)
    pipeline = pipeline_cls(model_name, model_folder, dict(common or {}), **dict(model_entry or {}))
    outputs = pipeline.run_inference(items)
    for i, out in enumerate(outputs):
        if not isinstance(out, output_model | ItemError):
            raise TypeError(
                f"{pipeline_cls.__name__} returned output {i} of type {type(out).__name__}; "
                f"expected {output_model.__name__} or ItemError"
            )
    return outputs


def stream_pipeline(
    pipeline_cls: type[StreamingPipeline[Any, Any, Any]],
    inputs: Sequence[BaseModel | Mapping[str, Any]],
    *,
    model_name: str = "test-model",
    model_entry: Mapping[str, Any] | None = None,
    common: Mapping[str, Any] | None = None,
    model_folder: str = ".",
) -> Iterator[tuple[int, BaseModel | None]]:
    """Build a streaming pipeline as the server would and stream one batch through it.

    Takes the arguments of `run_pipeline`. Yields ``(index, chunk)`` as the model makes them,
    ``(index, None)`` when that input's stream is done and ``(index, ItemError)`` when it failed.
    """
    input_model, _ = pipeline_cls.io_models()
    items = _validate_inputs(input_model, inputs)
    pipeline = pipeline_cls(model_name, model_folder, dict(common or {}), **dict(model_entry or {}))
    yield from pipeline.run_stream(items)


def _validate_inputs(input_model: type[BaseModel], inputs: Sequence[BaseModel | Mapping[str, Any]]) -> list[Any]:
    items: list[BaseModel] = []
    for i, raw in enumerate(inputs):
        if isinstance(raw, BaseModel):
            items.append(raw)
            continue
        try:
            items.append(input_model.model_validate(raw))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"input {i} is not a valid {input_model.__name__}: {problems}") from None
    return items
