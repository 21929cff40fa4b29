"""Figures for the dashboard: turnaround, rejections and queue depth, computed from the records."""
