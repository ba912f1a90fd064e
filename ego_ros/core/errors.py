"""Exception types of the Ego engine.

Every failure a caller can cause or meet in the field has its own type, so the ROS node and the CLI
can answer with a clear message and the concept store is never left half-written.
"""

from __future__ import annotations


class EgoError(Exception):
    """Base class of every error the engine raises on purpose."""


class InvalidImageError(EgoError, ValueError):
    """An input image is empty, of an unsupported mode or shape, or cannot be decoded."""


class InvalidConceptNameError(EgoError, ValueError):
    """A concept name is empty, too long, or holds path separators or control characters."""


class UnknownConceptError(EgoError, KeyError):
    """A concept name that the store does not hold."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else "unknown concept"


class DuplicateConceptError(EgoError, ValueError):
    """A concept with this name already exists and replacing it was not asked for."""


class StoreCorruptError(EgoError):
    """A concept store file cannot be read or does not hold what it should."""


class ModelMismatchError(EgoError):
    """A concept memory or calibration was made by another model than the one loaded."""


class BusyError(EgoError):
    """The engine is busy with a task that must not be interleaved (e.g. a concept introduction)."""


class DeviceOutOfMemoryError(EgoError, MemoryError):
    """The accelerator ran out of memory; the request was abandoned and nothing was changed."""


class ModelLoadError(EgoError):
    """A model cannot be loaded: unknown name, missing files, or an unsupported architecture."""


class CalibrationError(EgoError, ValueError):
    """Calibration data is missing or malformed, or a calibration file does not fit the model."""


class RequestTooLargeError(EgoError, ValueError):
    """A request over a size bound: generated tokens, question/notes characters or tokens, image pixels."""


class InvalidTextError(EgoError, ValueError):
    """A question or notes text is not a string or holds NUL or other control characters."""


class RequestTimeoutError(EgoError, TimeoutError):
    """A model call passed its wall-clock deadline and was abandoned cleanly (nothing was changed)."""


class RequestCancelledError(EgoError):
    """A model call was interrupted by `EgoEngine.interrupt()` (nothing was changed)."""


class StoreLockedError(EgoError):
    """Another live process holds the concept store's directory; the message names its pid and host."""


class StoreNotWritableError(EgoError):
    """The concept store's directory cannot be created or written."""


class ImageTooLargeError(RequestTooLargeError, InvalidImageError):
    """An image (decoded, or as its file header declares) has more pixels than the limit."""
