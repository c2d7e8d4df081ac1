"""The ``sagepipe`` command line: thin commands that parse, call a layer and render with rich."""
