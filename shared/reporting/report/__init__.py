"""Incident report: each run's timeline with its evidence, from the history and journal tables, as
one self-contained HTML file. `model` builds the runs and their summaries (pure), `chart` draws a
run as inline SVG, `page` writes the HTML document."""
