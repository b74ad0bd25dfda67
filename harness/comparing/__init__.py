"""Comparison: matching result sets, the regression verdicts, their rendering, and bench ab."""
