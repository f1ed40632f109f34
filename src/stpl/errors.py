"""The one exception the CLI turns into a one-line message and a non-zero exit status."""


class StplError(Exception):
    """A problem with the user's input (path, config, checkpoint, data), worth one clear line, no traceback."""
