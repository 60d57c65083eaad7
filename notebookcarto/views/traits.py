"""Traits of the views: numpy arrays that travel as binary buffers, and validated options.

An ``Array`` trait holds a C-contiguous numpy array of one dtype (or None) and is sent to the
front end as ``{"dtype": "float32", "shape": [n, 2], "buffer": <memoryview>}``: the buffer holds
the array's bytes in C order, little-endian, so the front end reads it as a typed array of that
dtype with that shape (``array`` in js/src/util.js) and sends arrays back the same way. None is
sent as ``null``; empty arrays are allowed.

An ``Option`` trait is a ``traitlets.Enum`` whose errors say what was received, what is
allowed and the closest allowed value; the error is both a ``TraitError`` (what traitlets
raises) and a ``ValueError`` (what the views' constructors promise), so the constructors check
their arguments with the same traits (``check_options``) and the messages come from one place.
"""

from __future__ import annotations

import difflib
import math

import numpy as np
import traitlets as t

__all__ = ["DTYPES", "Array", "Option", "OptionError", "array_from_json", "array_serialization",
           "array_to_json", "check_options", "option_message"]

# dtypes the front end has typed arrays for
DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "float32", "float64")


# ---- arrays ---------------------------------------------------------------------------------

def array_to_json(value, widget=None):
    """An array (or None) as the wire format: dtype name, shape and a memoryview of its bytes
    (C order, little-endian)."""
    if value is None:
        return None
    array = np.asarray(value)
    if array.dtype.name not in DTYPES:
        raise ValueError(f"cannot send a {array.dtype} array to the front end: use one of {DTYPES}")
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return {"dtype": array.dtype.name, "shape": list(array.shape),
            "buffer": memoryview(array.reshape(-1).view(np.uint8))}


def array_from_json(value, widget=None):
    """The wire format (from the front end) -> a numpy array of the native byte order (a copy:
    the message's buffer is not kept); None stays None."""
    if value is None or isinstance(value, np.ndarray):
        return value
    if not isinstance(value, dict) or not {"dtype", "shape", "buffer"} <= set(value):
        got = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise ValueError(f"an array from the front end is {{dtype, shape, buffer}}, got {got}")
    dtype, shape = str(value["dtype"]), [int(s) for s in value["shape"]]
    if dtype not in DTYPES:
        raise ValueError(f"unknown array dtype {dtype!r} from the front end: expected one of "
                         f"{DTYPES}")
    wire = np.dtype(dtype).newbyteorder("<")
    raw = memoryview(value["buffer"]).cast("B")
    if len(raw) != math.prod(shape) * wire.itemsize:
        raise ValueError(f"an array of {dtype} and shape {shape} needs "
                         f"{math.prod(shape) * wire.itemsize} bytes, the front end sent {len(raw)}")
    return np.frombuffer(raw, dtype=wire).reshape(shape).astype(np.dtype(dtype), copy=True)


array_serialization = {"to_json": array_to_json, "from_json": array_from_json}


class Array(t.TraitType):
    """A numpy array of ``dtype`` (values are cast to it: within a kind, or integers that fit)
    with ``ndim`` dimensions if given, or None where ``allow_none``. Synced widgets send it as a
    binary buffer with its dtype and shape (the serializers are part of the trait's metadata)."""

    info_text = "a numpy array"

    def __init__(self, dtype, *, ndim: int | None = None, default_value=None,
                 allow_none: bool = True, **kwargs):
        self.dtype = np.dtype(dtype)
        if self.dtype.name not in DTYPES:
            raise ValueError(f"Array traits hold one of {DTYPES}, not {self.dtype}")
        self.ndim = ndim
        self._default_array = None
        if default_value is not None:  # a fresh copy for every widget (see make_dynamic_default)
            self._default_array = np.asarray(default_value, dtype=self.dtype)
            default_value = t.Undefined
        super().__init__(default_value=default_value, allow_none=allow_none, **kwargs)
        for key, fn in array_serialization.items():
            self.metadata.setdefault(key, fn)

    def make_dynamic_default(self):
        return None if self._default_array is None else self._default_array.copy()

    def info(self) -> str:
        dims = "" if self.ndim is None else f"{self.ndim}-d "
        return f"a {dims}{self.dtype.name} array" + (" or None" if self.allow_none else "")

    def validate(self, obj, value):
        if value is None:
            if self.allow_none:
                return None
            self.error(obj, value)
        array = np.asarray(value)
        if array.dtype != self.dtype and not self._castable(array):
            raise t.TraitError(f"{self._where(obj)} holds {self.dtype.name} values; "
                               f"got {array.dtype} values that do not convert")
        if self.ndim is not None and array.ndim != self.ndim:
            raise t.TraitError(f"{self._where(obj)} must be a {self.ndim}-d array, got shape "
                               f"{array.shape}")
        return np.ascontiguousarray(array, dtype=self.dtype)

    def _castable(self, array: np.ndarray) -> bool:
        if array.dtype == object:
            return False
        if np.can_cast(array.dtype, self.dtype, "same_kind"):
            return True
        if array.dtype.kind in "biu" and self.dtype.kind in "iu":  # integers that fit
            if array.size == 0:
                return True
            limits = np.iinfo(self.dtype)
            return bool(limits.min <= array.min() and array.max() <= limits.max)
        return False

    def _where(self, obj) -> str:
        return f"{type(obj).__name__}.{self.name}" if obj is not None else str(self.name)


# ---- options ------------------------------------------------------------------------------

class OptionError(t.TraitError, ValueError):
    """A value that is not one of an option's allowed values."""


def _quoted(values) -> str:
    items = [repr(v) for v in values]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def option_message(name: str, value, values) -> str:
    """``"{name} must be 'a', 'b' or 'c', got 'x'"``, with the closest allowed value."""
    message = f"{name} must be {_quoted(values)}, got {value!r}"
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [str(v) for v in values], n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
    return message


class Option(t.Enum):
    """An option (``traitlets.Enum``): a bad value raises ``OptionError`` with a clear message."""

    def error(self, obj, value, error=None, info=None):
        raise OptionError(option_message(self.name, value, self.values))


def check_options(owner: type, **values) -> None:
    """Check constructor arguments against the option traits of the class ``owner`` (the same
    validation and message as setting the trait)."""
    for name, value in values.items():
        trait = owner.class_traits()[name]
        trait.validate(None, value)
