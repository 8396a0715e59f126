"""Summaries of a run_all results folder (html_report: results/report.html)."""
