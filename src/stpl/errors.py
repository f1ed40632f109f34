"""The exceptions the CLI turns into a one-line message and an exit status instead of a traceback."""


class StplError(Exception):
    """A problem with the user's input (path, config, checkpoint, data), worth one clear line, no traceback."""


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop (Ctrl-C, SIGTERM); `exit_code` is the shell's 128 + signal number.

    A KeyboardInterrupt, so that code catching Ctrl-C treats SIGTERM alike."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def os_error_message(err: OSError) -> str:
    """One line for an OS error: the path(s) it names and the OS's words for the cause."""
    cause = err.strerror or str(err) or type(err).__name__
    paths = [str(name) for name in (err.filename, err.filename2) if name is not None]
    return f"cannot access {' -> '.join(paths)}: {cause}" if paths else f"{cause} ({type(err).__name__})"


def file_error(path: object, what: str, hint: str = "") -> StplError:
    """The one line for a `path` that is not a readable file: "<what> not found: <path> (<hint>)" when nothing is
    there, else the OS's words ("Permission denied" for a folder on the way that may not be searched, ...)."""
    import os

    try:
        os.stat(path)  # type: ignore[arg-type]
    except FileNotFoundError:
        return StplError(f"{what} not found: {path}" + (f" ({hint})" if hint else ""))
    except OSError as err:
        return StplError(f"{what} {path}: {err.strerror or err}")
    return StplError(f"{what} {path} is not a file")


# an error line longer than this (a huge value quoted back) keeps its start and end, which name the setting or
# file and the cause, and says how much of the middle it left out
ERROR_LINE_LIMIT = 1000


def error_line(message: str) -> str:
    """`message` as the one line `stpl: error:` prints: line breaks shown as \\n, at most ERROR_LINE_LIMIT long."""
    line = message.replace("\r", "\\r").replace("\n", "\\n")
    if len(line) <= ERROR_LINE_LIMIT:
        return line
    keep = ERROR_LINE_LIMIT // 2 - 40
    return f"{line[:keep]} ... ({len(line) - 2 * keep} characters left out) ... {line[-keep:]}"
