#!/usr/bin/env python3
"""Run a command as the terminal's foreground process group, so that Ctrl-C reaches it
and not make: `make up` then ends as the command decides (0 after a clean stop), with
no make error line. Without a terminal it just runs the command."""
import os
import signal
import sys


def main() -> int:
    argv = sys.argv[1:]
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        tty = None
    pid = os.fork()
    if pid == 0:
        if tty is not None:
            os.setpgid(0, 0)
            # A background group may not take the terminal without this.
            signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            try:
                os.tcsetpgrp(tty, os.getpgrp())
            except OSError:
                pass
            signal.signal(signal.SIGTTOU, signal.SIG_DFL)
        os.execvp(argv[0], argv)
    # The parent stays in make's group: Ctrl-C no longer reaches it, but a SIGINT sent
    # to it anyway is passed on rather than ending it first.
    signal.signal(signal.SIGINT, lambda *_: os.kill(pid, signal.SIGINT))
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if tty is not None:
        # Give the terminal back to our own group (make's) before it goes on.
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.tcsetpgrp(tty, os.getpgrp())
        except OSError:
            pass
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main())
