"""Domain errors: each names the model (or field, or position) and what was expected."""


class SommelierError(Exception):
    """Base class of every error Sommelier raises on purpose."""


class RepositoryError(SommelierError):
    """A repository cannot be listed or a model cannot be fetched (unreachable hub, bad handle)."""


class ConversionError(SommelierError):
    """A model cannot be converted to ONNX, or the ONNX file is not a valid model."""


class ConversionMismatch(ConversionError):
    """The ONNX conversion disagrees numerically with the original model beyond tolerance."""


class IncompatibleModels(SommelierError):
    """Two models' input/output signatures (or label vocabularies) do not match."""


class UnknownModel(SommelierError):
    """A model id that is not in the index or repository."""


class UnknownMetric(SommelierError):
    """A resource metric or device that the index does not hold."""


class MissingStageOutput(SommelierError):
    """A stage needs another model's stored output that has not been materialized yet."""


class InvalidValue(SommelierError, ValueError):
    """A number, name or path given by the user that is non-finite, out of range or unusable; the message names
    the field and what was expected. Also a `ValueError`, so callers of the Python API that catch it keep working."""


class NonFiniteValues(SommelierError):
    """A model's outputs, or a dataset's inputs, hold NaN or ±inf where finite numbers are expected: compared as
    they are they would give a silent wrong answer (a disagreement of 0 between models that differ)."""


class InputTooLarge(SommelierError):
    """The inputs a model's declared shape asks for would take more memory than the input budget; refused before
    anything is allocated."""
