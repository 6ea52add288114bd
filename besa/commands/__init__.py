"""One module per ``besa`` subcommand (the entry layer; stages expose library functions only).

A command module provides ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``;
``besa.cli.COMMANDS`` maps the subcommand name to its module here.
"""
