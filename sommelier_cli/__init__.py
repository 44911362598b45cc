"""The `sommelier` command line, apart from the library it drives."""
