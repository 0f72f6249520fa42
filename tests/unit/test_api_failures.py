"""What a client reads when a request fails for a reason that is not its own."""

from __future__ import annotations

import errno
import os

from berth.api.routes import failure_message


def test_a_full_disk_is_named_as_such_not_as_an_internal_error():
    err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/var/lib/berth/containers/abc/hosts")
    assert failure_message(err) == (
        "berthd cannot write its state (No space left on device: /var/lib/berth/containers/abc/hosts)"
    )


def test_a_read_only_state_directory_without_a_file_name():
    assert failure_message(OSError(errno.EROFS, os.strerror(errno.EROFS))) == (
        "berthd cannot write its state (Read-only file system)"
    )


def test_any_other_failure_stays_an_internal_error():
    assert failure_message(ValueError("boom")) == "internal error: boom"
