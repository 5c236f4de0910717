"""The client's pull rules without I/O (:class:`PullReceiver`): frames and descriptors in,
actions out, and every frame a well-behaved agent does not send a clear error.

The descriptors are plain integers here: the receiver only hands them on in order (the drivers
own, copy and close them; tests/cli/test_hostile_agent.py runs the same rules over a socket).
"""

from __future__ import annotations

import hashlib

import pytest

from frumitcache.client._receiver import (
    CopyFile,
    Finished,
    PullReceiver,
    Retry,
    Started,
    Write,
)
from frumitcache.control import Data, Failed, FileData, Pull, PullDone, PullFiles, PullStarted
from frumitcache.errors import DigestMismatchError, NotAllowedError, ProtocolError

URL = "http://example.test/a.bin"
BODY = b"abcdefgh" * 16
DIGEST = hashlib.sha256(BODY).digest()


def files_receiver(sha256: bytes | None = None) -> PullReceiver:
    receiver = PullReceiver(URL, sha256=sha256, files=True)
    assert receiver.request() == PullFiles(url=URL, sha256=sha256)
    assert receiver.receive(PullStarted(size=len(BODY), source="store")) == Started(
        len(BODY), "store"
    )
    return receiver


def test_files_in_order_then_done() -> None:
    receiver = files_receiver(sha256=DIGEST)
    receiver.add_fds([11, 12])
    assert receiver.receive(FileData(skip=0, count=100)) == CopyFile(11, 0, 100)
    assert receiver.receive(FileData(skip=5, count=28)) == CopyFile(12, 5, 28)
    done = receiver.receive(PullDone(digest=DIGEST, size=128))
    assert isinstance(done, Finished)
    assert (done.outcome.size, done.outcome.digest, done.outcome.files) == (128, DIGEST, True)
    assert receiver.unclaimed_fds() == []


def test_frames_are_hashed_and_checked() -> None:
    receiver = PullReceiver(URL, sha256=DIGEST, files=False)
    assert receiver.request() == Pull(url=URL, sha256=DIGEST)
    receiver.receive(PullStarted(size=None, source="origin"))
    assert receiver.receive(Data(BODY[:50])) == Write(BODY[:50])
    assert receiver.receive(Data(BODY[50:])) == Write(BODY[50:])
    done = receiver.receive(PullDone(digest=DIGEST, size=len(BODY)))
    assert isinstance(done, Finished)
    assert (done.outcome.digest, done.outcome.source, done.outcome.files) == (
        DIGEST,
        "origin",
        False,
    )


def test_an_agent_older_than_pullfiles_means_ask_again() -> None:
    receiver = PullReceiver(URL, files=True)
    assert receiver.receive(Failed(code=ProtocolError.code, message="unknown tag")) == Retry()
    with pytest.raises(ProtocolError, match="after the pull ended"):
        receiver.receive(PullStarted(size=1, source="store"))
    # With frames there is nothing older to fall back to: the protocol error is the answer.
    frames = PullReceiver(URL, files=False)
    with pytest.raises(ProtocolError, match="unknown tag"):
        frames.receive(Failed(code=ProtocolError.code, message="unknown tag"))


def test_the_agents_error_is_raised_as_itself() -> None:
    with pytest.raises(NotAllowedError, match="not on the allow-list"):
        PullReceiver(URL).receive(
            Failed(code=NotAllowedError.code, message="not on the allow-list")
        )
    receiver = files_receiver()
    with pytest.raises(NotAllowedError):
        receiver.receive(Failed(code=NotAllowedError.code, message="redirected"))


@pytest.mark.parametrize(
    "first",
    [Data(b"x"), FileData(skip=0, count=1), PullDone(digest=DIGEST, size=1)],
    ids=["data", "fdata", "done"],
)
def test_bytes_before_the_answer_are_refused(first: Data | FileData | PullDone) -> None:
    receiver = PullReceiver(URL, files=True)
    receiver.add_fds([7])
    with pytest.raises(ProtocolError, match=f"unexpected {first.tag} to a pull"):
        receiver.receive(first)
    assert receiver.unclaimed_fds() == [7]  # still the driver's to close


def test_a_second_answer_and_anything_after_done_are_refused() -> None:
    receiver = files_receiver()
    with pytest.raises(ProtocolError, match="unexpected pull\\+ in a pull"):
        receiver.receive(PullStarted(size=1, source="store"))
    # An error ends the conversation: nothing more is taken.
    with pytest.raises(ProtocolError, match="after the pull ended"):
        receiver.receive(Data(b"x"))
    done = files_receiver()
    done.receive(Data(BODY))
    done.receive(PullDone(digest=DIGEST, size=len(BODY)))
    with pytest.raises(ProtocolError, match="after the pull ended"):
        done.receive(Data(b"more"))


def test_a_frame_without_its_descriptor() -> None:
    receiver = files_receiver()
    with pytest.raises(ProtocolError, match="without its descriptor"):
        receiver.receive(FileData(skip=0, count=10))


def test_a_descriptor_without_a_frame() -> None:
    receiver = files_receiver()
    receiver.add_fds([21, 22])
    receiver.receive(FileData(skip=0, count=len(BODY)))
    with pytest.raises(ProtocolError, match="descriptor without a frame"):
        receiver.receive(PullDone(digest=DIGEST, size=len(BODY)))
    assert receiver.unclaimed_fds() == [22]
    assert receiver.unclaimed_fds() == []  # handed over once


def test_file_data_in_a_frames_pull_is_refused() -> None:
    receiver = PullReceiver(URL, files=False)
    receiver.receive(PullStarted(size=len(BODY), source="store"))
    receiver.add_fds([5])
    with pytest.raises(ProtocolError, match="unexpected fdata in a pull"):
        receiver.receive(FileData(skip=0, count=1))


@pytest.mark.parametrize("files", [True, False])
def test_more_bytes_than_the_object_has(files: bool) -> None:
    receiver = PullReceiver(URL, files=files)
    receiver.receive(PullStarted(size=10, source="store"))
    receiver.add_fds([3])
    receiver.receive(Data(b"0123456"))
    last = FileData(skip=0, count=4) if files else Data(b"0123")
    with pytest.raises(ProtocolError, match="sent 11 bytes of a 10-byte object"):
        receiver.receive(last)


@pytest.mark.parametrize("files", [True, False])
@pytest.mark.parametrize("size", [len(BODY) - 1, len(BODY) + 1])
def test_done_must_count_what_was_sent(files: bool, size: int) -> None:
    receiver = PullReceiver(URL, files=files)
    receiver.receive(PullStarted(size=None, source="store"))
    receiver.receive(Data(BODY))
    with pytest.raises(ProtocolError, match=f"sent {len(BODY)} bytes of a {size}-byte object"):
        receiver.receive(PullDone(digest=DIGEST, size=size))


def test_frames_that_do_not_hash_to_the_agents_digest() -> None:
    receiver = PullReceiver(URL, files=False)
    receiver.receive(PullStarted(size=len(BODY), source="store"))
    receiver.receive(Data(BODY[:-1] + b"!"))
    with pytest.raises(DigestMismatchError, match="the agent reports"):
        receiver.receive(PullDone(digest=DIGEST, size=len(BODY)))


@pytest.mark.parametrize("files", [True, False])
def test_an_object_that_is_not_the_wanted_one(files: bool) -> None:
    wanted = hashlib.sha256(b"something else").digest()
    receiver = PullReceiver(URL, sha256=wanted, files=files)
    receiver.receive(PullStarted(size=len(BODY), source="store"))
    receiver.add_fds([9] if files else [])
    receiver.receive(FileData(skip=0, count=len(BODY)) if files else Data(BODY))
    with pytest.raises(DigestMismatchError, match=f"expected {wanted.hex()}"):
        receiver.receive(PullDone(digest=DIGEST, size=len(BODY)))
