"""The InferencePipeline contract: preprocess -> predict -> postprocess over a batch."""

from __future__ import annotations

import typing
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from modalkit_pipeline._iomodels import InferenceOutputModel, ItemError
from modalkit_pipeline.errors import OutputCountError, PipelineError

InputT = TypeVar("InputT", bound=BaseModel)
OutputT = TypeVar("OutputT", bound=BaseModel)


class InferencePipeline(ABC, Generic[InputT, OutputT]):
    """Base class for one model version's inference.

    Subclass it as ``class MyPipeline(InferencePipeline[MyInput, MyOutput])`` and implement the three stages.
    The serving layer builds one instance per model entry and calls `run_inference` with batches.

    Args:
        model_name: The model entry's name in ``model_settings.model_entries``.
        all_model_data_folder: Where model artefacts live (``model_settings.local_model_repository_folder``).
        common_settings: ``model_settings.common``, shared by every model entry.
        *args: Ignored; accepted so pipelines written for the earlier modalkit keep working.
        **kwargs: The model entry's own settings; kept in ``self.model_kwargs``.
    """

    def __init__(
        self,
        model_name: str,
        all_model_data_folder: str,
        common_settings: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        self.model_name = model_name
        self.all_model_data_folder = all_model_data_folder
        self.common_settings = common_settings
        self.model_kwargs: dict[str, Any] = dict(kwargs)

    @abstractmethod
    def preprocess(self, input_list: list[InputT]) -> dict[str, Any]:
        """Turn a batch of inputs into what `predict` needs (tensors, token ids, ...)."""

    @abstractmethod
    def predict(self, input_list: list[InputT], preprocessed_data: dict[str, Any]) -> dict[str, Any]:
        """Run the model on the preprocessed batch and return its raw output."""

    @abstractmethod
    def postprocess(self, input_list: list[InputT], raw_output: dict[str, Any]) -> list[OutputT | ItemError]:
        """Turn the raw output into exactly one output per input, in input order.

        For an input that cannot be processed, put ``self.item_error("why")`` at its position: that item fails
        alone and the rest of the batch succeeds.
        """

    def on_volume_reload(self) -> None:
        """Called after the serving layer reloaded the model volumes; reload artefacts here. Does nothing by default."""

    def item_error(self, message: str, *, index: int | None = None) -> ItemError:
        """Build the result for one input that cannot be processed, to return from `postprocess` in its place.

        The error is about the input (``kind="input"``): ``/predict_sync`` answers it with a 422 carrying
        ``message``, a batch or async result carries it as that item's error. For a failure of the model itself,
        raise instead: the serving layer isolates the input and reports an internal error (500).

        Args:
            message: What is wrong with the input; shown to the caller, so it must not contain secrets.
            index: The input's position in the batch, if useful to the caller.
        """
        return ItemError(error=message, index=index, kind="input")

    def run_inference(self, input_list: list[InputT]) -> list[OutputT | ItemError]:
        """Run preprocess -> predict -> postprocess over one batch.

        Raises:
            OutputCountError: postprocess returned a different number of outputs than there were inputs.
        """
        if not input_list:
            return []
        preprocessed = self.preprocess(input_list)
        raw = self.predict(input_list, preprocessed)
        outputs = list(self.postprocess(input_list, raw))
        if len(outputs) != len(input_list):
            raise OutputCountError(type(self).__name__, expected=len(input_list), got=len(outputs))
        return outputs

    @classmethod
    def is_streaming(cls) -> bool:
        """Whether the pipeline yields chunks (a `StreamingPipeline`); ``/predict_stream`` serves only those."""
        return False

    @classmethod
    def io_models(cls) -> tuple[type[BaseModel], type[BaseModel]]:
        """The input and output models this pipeline was declared with.

        Raises:
            PipelineError: the class (and its bases) never parameterised ``InferencePipeline[In, Out]``.
        """
        for klass in cls.__mro__:
            for base in getattr(klass, "__orig_bases__", ()):
                if typing.get_origin(base) is InferencePipeline:
                    args = typing.get_args(base)
                    if len(args) == 2 and all(isinstance(a, type) and issubclass(a, BaseModel) for a in args):
                        return args[0], args[1]
        raise PipelineError(
            f"{cls.__name__} does not declare its models: write "
            f"`class {cls.__name__}(InferencePipeline[InputModel, OutputModel])` with two pydantic models"
        )


def failed_indices(results: Sequence[BaseModel]) -> list[int]:
    """Positions of the results that are errors: `ItemError`, or any output whose ``status`` is not ``success``."""
    # ItemError is an InferenceOutputModel whose status is always "error".
    return [i for i, r in enumerate(results) if isinstance(r, InferenceOutputModel) and r.status != "success"]
