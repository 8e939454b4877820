"""Opening a GGUF file with the ``gguf`` package and reading its metadata, refusing in one sentence.

The ``gguf`` package parses the file; this module only checks what it hands back (that every tensor's
bytes lie inside the file, that a key is present and has the expected type) and turns the reader's
own failures into a :class:`GGUFRefused` naming the file and the field at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from model_core.errors import ModelCoreError, q

INT_TYPES = frozenset(
    {
        gguf.GGUFValueType.UINT8,
        gguf.GGUFValueType.INT8,
        gguf.GGUFValueType.UINT16,
        gguf.GGUFValueType.INT16,
        gguf.GGUFValueType.UINT32,
        gguf.GGUFValueType.INT32,
        gguf.GGUFValueType.UINT64,
        gguf.GGUFValueType.INT64,
    }
)
FLOAT_TYPES = frozenset({gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.FLOAT64}) | INT_TYPES


class GGUFRefused(ModelCoreError):
    """The GGUF file cannot be imported."""

    code = "gguf_refused"
    http_status = 422

    def __init__(self, file: Path | str, field: str, problem: str) -> None:
        super().__init__(f"{file}: {field} {problem}", file=str(file), field=field)
        self.file = str(file)
        self.field = field


class _CheckedReader(gguf.GGUFReader):
    """The package's reader, checking each tensor's extent against the file size before mapping it."""

    def _build_tensors(self, start_offs: int, fields: list[Any]) -> None:
        size = len(self.data)
        for field in fields:
            try:
                _, name_data, _, dims, raw_dtype, offset_tensor = field.parts
                name = bytes(name_data).decode("utf-8", errors="replace")
                block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(int(raw_dtype[0]))]
            except (ValueError, KeyError):
                continue  # the reader itself names what is wrong with this entry
            n_bytes = int(np.prod(dims.astype(np.uint64))) * type_size // block
            end = int(start_offs) + int(offset_tensor[0]) + n_bytes
            if end > size:
                raise _Truncated(name, end, size)
        super()._build_tensors(start_offs, fields)


class _Truncated(Exception):
    def __init__(self, tensor: str, end: int, size: int) -> None:
        super().__init__(tensor)
        self.tensor, self.end, self.size = tensor, end, size


@dataclass(frozen=True)
class GGUFFile:
    """An opened GGUF file: its path, the package's reader, and typed metadata getters."""

    path: Path
    reader: gguf.GGUFReader

    def has(self, key: str) -> bool:
        return key in self.reader.fields

    def _field(self, key: str) -> Any:
        field = self.reader.fields.get(key)
        if field is None:
            raise GGUFRefused(self.path, key, "is missing from the metadata")
        return field

    def _scalar(self, key: str, types: frozenset[gguf.GGUFValueType], what: str) -> Any:
        field = self._field(key)
        if len(field.types) != 1 or field.types[0] not in types:
            raise GGUFRefused(self.path, key, f"must be {what}, not {_type_name(field)}")
        return field.contents()

    def get_int(self, key: str, default: int | None = None) -> int:
        if default is not None and not self.has(key):
            return default
        return int(self._scalar(key, INT_TYPES, "an integer"))

    def get_float(self, key: str, default: float | None = None) -> float:
        if default is not None and not self.has(key):
            return default
        return float(self._scalar(key, FLOAT_TYPES, "a number"))

    def get_str(self, key: str, default: str | None = None) -> str:
        if default is not None and not self.has(key):
            return default
        return str(self._scalar(key, frozenset({gguf.GGUFValueType.STRING}), "a string"))

    def get_bool(self, key: str, default: bool) -> bool:
        if not self.has(key):
            return default
        return bool(self._scalar(key, frozenset({gguf.GGUFValueType.BOOL}), "a boolean"))

    def str_list(self, key: str) -> list[str]:
        return [str(v) for v in self._array(key, frozenset({gguf.GGUFValueType.STRING}), "strings")]

    def int_list(self, key: str) -> list[int]:
        return [int(v) for v in self._array(key, INT_TYPES, "integers")]

    def _array(self, key: str, types: frozenset[gguf.GGUFValueType], what: str) -> list[Any]:
        field = self._field(key)
        if len(field.types) != 2 or field.types[0] != gguf.GGUFValueType.ARRAY or field.types[1] not in types:
            raise GGUFRefused(self.path, key, f"must be an array of {what}, not {_type_name(field)}")
        try:
            return list(field.contents())
        except UnicodeDecodeError:
            raise GGUFRefused(self.path, key, "holds a string that is not UTF-8") from None


def _type_name(field: Any) -> str:
    return " of ".join(t.name.lower() for t in field.types) or "empty"


def open_gguf(path: Path) -> GGUFFile:
    """Open ``path`` with the ``gguf`` package's reader; a truncated or malformed file is refused."""
    try:
        reader = _CheckedReader(path)
    except _Truncated as e:
        raise GGUFRefused(
            path, f"tensor {q(e.tensor)}", f"ends at byte {e.end} but the file has {e.size} bytes (truncated)"
        ) from None
    except FileNotFoundError:
        raise GGUFRefused(path, "file", "does not exist") from None
    except OSError as e:
        raise GGUFRefused(path, "file", f"cannot be read: {e.strerror or e}") from None
    except (ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise GGUFRefused(
            path, "header", f"cannot be read as GGUF ({q(str(e), 120)}): the file is truncated or not GGUF"
        ) from None
    return GGUFFile(path, reader)
