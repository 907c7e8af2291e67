"""reports.csvexport: text cells cannot become spreadsheet formulas; numbers stay numbers."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from reports.csvexport import CsvTable, neutralise


@pytest.mark.parametrize("text", ["=1+1", "+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "-3.5"])
def test_text_that_starts_a_formula_gets_a_quote(text: str) -> None:
    assert neutralise(text) == "'" + text


@pytest.mark.parametrize("text", ["", "Pothole", "3 + 4 = 7", " =1", "'=1", "1-2"])
def test_other_text_is_left_as_it_is(text: str) -> None:
    assert neutralise(text) == text


def test_text_is_quoted_and_numbers_are_bare() -> None:
    table = CsvTable(["name", "n", "share", "lon"], numeric=["n", "share", "lon"])
    out = (
        table.header()
        + table.row(['=HYPERLINK("x")', 3, None, Decimal("-3.500000")])
        + table.row([None, -2, 0.25, -1.5])
    )
    assert out == (
        '"name","n","share","lon"\r\n"\'=HYPERLINK(""x"")",3,,-3.500000\r\n"",-2,0.25,-1.5\r\n'
    )
    assert list(csv.reader(io.StringIO(out)))[1] == ['\'=HYPERLINK("x")', "3", "", "-3.500000"]


@pytest.mark.parametrize("bad", ["-3.5", "=1+1", True])
def test_a_numeric_column_takes_numbers_only(bad: object) -> None:
    table = CsvTable(["lon"], numeric=["lon"])
    with pytest.raises(TypeError, match="'lon' is numeric"):
        table.row([bad])


def test_rows_must_fit_the_columns() -> None:
    with pytest.raises(ValueError, match="not in the table"):
        CsvTable(["a"], numeric=["b"])
    with pytest.raises(ValueError, match="2 values for 1 columns"):
        CsvTable(["a"]).row(["x", "y"])
