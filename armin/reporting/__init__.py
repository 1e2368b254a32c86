"""Reading the database back: study status now, comparison reports later."""
