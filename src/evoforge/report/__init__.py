"""Reports of runs: text summaries and tables (`text`) for the terminal, and one self-contained
offline HTML page per run (`html`, built from `data`) with the front, the search's progress, the
members and what went into the best ones. User strings are escaped, never executed."""

from evoforge.report.html import REPORT_NAME, write_report
from evoforge.report.text import TABLE_EXTRAS, format_table, run_summary

__all__ = ["REPORT_NAME", "TABLE_EXTRAS", "format_table", "run_summary", "write_report"]
