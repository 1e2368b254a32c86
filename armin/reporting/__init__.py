"""Reading the database back: study status, queries, and reports whose verdicts come from `armin.stats`."""
