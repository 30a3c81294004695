"""The one Markdown table writer: layout, empty cells, alignment, and the metrics table built on it."""

import pytest
from hybrid_rearec.hybrid.evaluate import format_table
from hybrid_rearec.hybrid.metrics import metric_keys
from hybrid_rearec.hybrid.tables import markdown_row, markdown_table, separator


def test_rows_pad_every_cell_and_print_empty_cells_without_a_double_space():
    assert markdown_row(["a", "0.1234", ""]) == "| a | 0.1234 | |"
    assert markdown_row(["", "x"]) == "| | x |"
    assert markdown_row([3, 1.5]) == "| 3 | 1.5 |"  # cells are written as str() gives them


def test_a_table_is_header_separator_and_rows_without_a_trailing_newline():
    table = markdown_table(["name", "value"], [["a", "1"], ["b", ""]], "lr")
    assert table == "| name | value |\n|---|---:|\n| a | 1 |\n| b | |"
    assert markdown_table(["only"], [], "l") == "| only |\n|---|"  # no rows: header and separator


def test_alignment_codes_and_row_widths_are_checked():
    assert separator("lrr") == "|---|---:|---:|"
    with pytest.raises(ValueError, match="use 'l' \\(text\\) or 'r' \\(figures\\)"):
        separator("lc")
    with pytest.raises(ValueError, match="2 columns but 3 alignment codes"):
        markdown_table(["a", "b"], [], "lrr")
    with pytest.raises(ValueError, match="a row has 1 cells but the table 2 columns"):
        markdown_table(["a", "b"], [["x"]], "lr")


def test_format_table_keeps_its_layout():
    """Run reports and the compare command print this table; its text must not move."""
    metrics = {key: 0.1 * (i + 1) for i, key in enumerate(metric_keys((10,)))}
    table = format_table({"sasrec test": metrics, "rearec test": {k: v / 2 for k, v in metrics.items()}}, (10,))
    assert table == (
        "| model | recall@10 | ndcg@10 | mrr@10 |\n"
        "|---|---:|---:|---:|\n"
        "| sasrec test | 0.1000 | 0.2000 | 0.3000 |\n"
        "| rearec test | 0.0500 | 0.1000 | 0.1500 |"
    )
