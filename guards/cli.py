"""The top-level handler of every command line (``python -m datasets|methods|metrics|reports``):
what escapes a command becomes one line on stderr naming the file and what to do.

A file-system error (full disk, a symlink loop, a missing or unreadable file, a read-only
folder) and running out of memory are the user's to fix: one line, no traceback. Anything else
is a bug: its traceback goes to the job's log (stderr, when that is not a terminal; in a
terminal to a file the line names), then the one line.
"""

from __future__ import annotations

import errno
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence

# options whose values a command writes: named when a write fails without saying which file
OUTPUT_OPTIONS = ("--out", "--html", "--out-dir")

_ADVICE = {
    errno.ENOSPC: "no space left on device: free space there (or give the study an out folder on another disk) "
                  "and run again",
    errno.EDQUOT: "disk quota exceeded: free space in your quota (or use another out folder) and run again",
    errno.ELOOP: "a symbolic link that leads back to itself (a loop): point it to the real file",
    errno.EACCES: "permission denied: make it readable (and its folder writable) or use another path",
    errno.EPERM: "operation not permitted: make it writable or use another path",
    errno.EROFS: "read-only file system: use an out folder on a writable disk",
    errno.ENOENT: "does not exist: check the path",
    errno.EISDIR: "is a folder where a file is expected: name the file",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.ENAMETOOLONG: "the name is too long: use a shorter path",
}


def written_paths(argv: Sequence[str], outputs: Sequence[str] = OUTPUT_OPTIONS) -> list[str]:
    """The values of the output options in ``argv`` (what a failed write without a file name is about;
    ``--out`` may be followed by several)."""
    found, current = [], None
    for arg in argv:
        if arg.startswith("-"):
            current = arg if arg in outputs else None
        elif current:
            found.append(arg)
    return found


def one_line(prog: str, exc: BaseException, argv: Sequence[str],
             outputs: Sequence[str] = OUTPUT_OPTIONS) -> str | None:
    """The one line for an error the user can fix (file system, memory), else None (a bug)."""
    if isinstance(exc, MemoryError):
        return (f"error: {prog}: out of memory: run it where more memory is free (or on a smaller dataset); "
                "in a study, the job is retried with more memory when retries are set")
    if not isinstance(exc, OSError) or exc.errno not in _ADVICE:
        return None
    names = [n for n in (exc.filename, exc.filename2) if n]
    shown = written_paths(argv, outputs)
    shown = ", ".join(shown[:3]) + (f" (and {len(shown) - 3} more)" if len(shown) > 3 else "")
    where = " -> ".join(map(str, names)) if names else shown or "its files"
    return f"error: {prog}: {where}: {_ADVICE[exc.errno]}"


def report(prog: str, exc: BaseException, argv: Sequence[str], outputs: Sequence[str] = OUTPUT_OPTIONS) -> None:
    """Print the one line for ``exc`` on stderr (after the traceback, where it belongs, for a bug)."""
    line = one_line(prog, exc, argv, outputs)
    if line is None:
        text = "".join(traceback.format_exception(exc))
        if sys.stderr.isatty():
            with tempfile.NamedTemporaryFile("w", prefix="traceback-", suffix=".txt", delete=False) as fh:
                fh.write(text)
            where = f"its traceback is in {fh.name}"
        else:
            sys.stderr.write(text)
            where = "its traceback is above"
        line = (f"error: {prog}: {type(exc).__name__}: {' '.join(str(exc).split())} (unexpected: {where}; "
                "please report it with the command that gave it)")
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:  # stderr itself is on the full disk: the exit status still says it failed
        pass


def guarded(prog: str, main: Callable[[list[str] | None], int | None], argv: list[str] | None = None,
            outputs: Sequence[str] = OUTPUT_OPTIONS) -> int:
    """Run ``main(argv)``; an exception it raises becomes one line on stderr and exit status 1.
    ``outputs``: the options that name what the command writes."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(main(args) or 0)
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the top of a command line: every error is reported
        report(prog, exc, args, outputs)
        return 1
