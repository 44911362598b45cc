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
