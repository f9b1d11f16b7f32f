"""The command line: entry point, REPL, commands and rendering."""
