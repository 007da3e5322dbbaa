"""The InferencePipeline contract: preprocess -> predict -> postprocess over a batch."""

from __future__ import annotations

import difflib
import inspect
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeGuard, TypeVar

from pydantic import BaseModel, ValidationError

from modalkit_pipeline._iomodels import InferenceOutputModel, ItemError
from modalkit_pipeline.errors import OutputCountError, PipelineError

InputT = TypeVar("InputT", bound=BaseModel)
OutputT = TypeVar("OutputT", bound=BaseModel)

EntryProblem = tuple[tuple[str | int, ...], str]
"""A problem in a model entry: the key path inside the entry (``()`` for the entry itself) and what is wrong."""

# The constructor's first three parameters: modalkit passes them itself, a model entry cannot.
_PASSED_BY_MODALKIT = 3


class InferencePipeline(ABC, Generic[InputT, OutputT]):
    """Base class for one model version's inference.

    Subclass it as ``class MyPipeline(InferencePipeline[MyInput, MyOutput])`` and implement the three stages.
    The serving layer builds one instance per model entry and calls `run_inference` with batches.

    Args:
        model_name: The model entry's name in ``model_settings.model_entries``.
        all_model_data_folder: Where model artefacts live (``model_settings.local_model_repository_folder``).
        common_settings: ``model_settings.common``, shared by every model entry.
        *args: Ignored; accepted so pipelines written for the earlier modalkit keep working.
        **kwargs: The model entry's own settings; kept in ``self.model_kwargs`` (and, validated, in
            ``self.entry`` when the class sets `entry_model`).

    A pipeline declares the arguments a model entry may give, so a typo in ``modalkit.yaml`` is an error when
    the service loads its config rather than a silently ignored key: either keyword parameters of its own
    ``__init__`` after the first three (with no ``**kwargs``), or a pydantic model in `entry_model`. A pipeline
    that takes ``**kwargs`` and sets no `entry_model` declares nothing, and any entry is accepted.
    """

    entry_model: ClassVar[type[BaseModel] | None] = None
    """A pydantic model of the model entries' keyword arguments; None: the constructor's signature says."""

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
        model = type(self).entry_model
        self.entry: BaseModel | None = None if model is None else model.model_validate(kwargs)
        """The model entry validated by `entry_model`, when the class sets one."""

    @classmethod
    def entry_problems(cls, entry: Mapping[str, Any]) -> list[EntryProblem]:
        """What is wrong with a model entry for this pipeline, by the arguments it declares (none: ``[]``).

        Unknown keys (with a "did you mean"), missing required ones, and with `entry_model` bad values.
        """
        if cls.entry_model is not None:
            return _model_problems(cls.entry_model, entry)
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return []
        passed = [p.name for p in parameters[:_PASSED_BY_MODALKIT]]
        takes = {
            p.name: p
            for p in parameters[_PASSED_BY_MODALKIT:]
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }
        problems: list[EntryProblem] = []
        for key in entry:
            if key in passed:
                problems.append(((key,), f"is set by modalkit itself, not by a model entry ({cls.__name__})"))
            elif key not in takes:
                problems.append(((key,), _unknown(str(key), sorted(takes), f"{cls.__name__}.__init__")))
        for name, parameter in takes.items():
            if parameter.default is inspect.Parameter.empty and name not in entry:
                problems.append(((), f"missing argument {name!r}, required by {cls.__name__}.__init__"))
        return problems

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

        An empty batch runs the three stages too (on the empty list), as it always did; the serving layer never
        sends one.

        Raises:
            OutputCountError: postprocess returned a different number of outputs than there were inputs.
        """
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


def is_failure(result: object) -> TypeGuard[InferenceOutputModel]:
    """Whether a result is a failure: an `ItemError`, or any output whose ``status`` is not ``success``.

    The one test of it: the worker, the routes, the job store, the streams and the Modal side all ask this.
    """
    # ItemError is an InferenceOutputModel whose status is always "error".
    return isinstance(result, InferenceOutputModel) and result.status != "success"


def failed_indices(results: Sequence[BaseModel]) -> list[int]:
    """Positions of the results that are failures (see `is_failure`)."""
    return [i for i, r in enumerate(results) if is_failure(r)]


def _model_problems(model: type[BaseModel], entry: Mapping[str, Any]) -> list[EntryProblem]:
    names = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
    problems: list[EntryProblem] = []
    if model.model_config.get("extra") != "allow":
        for key in entry:
            if key not in names:
                problems.append(((key,), _unknown(str(key), sorted(model.model_fields), model.__name__)))
    try:
        model.model_validate(dict(entry))
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            if error["type"] == "extra_forbidden":
                continue  # reported above, with a "did you mean"
            if error["type"] == "missing":
                problems.append(((*loc[:-1],), f"missing argument {loc[-1]!r}, required by {model.__name__}"))
            else:
                problems.append((loc, str(error["msg"])))
    return problems


def _unknown(key: str, known: list[str], owner: str) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    takes = ", ".join(known) if known else "none"
    return f"unknown argument of {owner}; {hint}(it takes: {takes})"
