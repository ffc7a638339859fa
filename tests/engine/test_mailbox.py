"""The worker groups' mailbox, in-process (no Ray): one current command, replies per group."""

import threading

from raymix.engine.mailbox import LOAD, Mailbox, MailboxClient, Member, Posted, Stop
from raymix.engine.service import serve
from raymix.errors import DataError


def test_a_command_is_answered_once_one_group_replied_from_every_rank():
    box = Mailbox()
    box.post(Posted(1, "fit"))
    old = [Member(0, 2, token=11), Member(1, 2, token=11)]
    new = [Member(0, 2, token=22), Member(1, 2, token=22)]
    box.reply(1, old[0], "old 0")
    box.reply(1, new[1], "new 1")
    assert box.collect(1, timeout=0.01) is None  # neither group is complete
    box.reply(1, new[0], "new 0")
    assert box.collect(1, timeout=0.01) == ["new 0", "new 1"]  # ordered by rank


def test_a_restarted_group_gets_the_current_command_again():
    box = Mailbox()
    box.post(Posted(3, "fit"))
    assert box.next(LOAD) == Posted(3, "fit")  # a worker that only loaded
    box.reply(LOAD, Member(0, 1, token=1), "rows")
    box.reply(LOAD, Member(0, 1, token=2), "rows again")  # the group started over
    assert box.next(LOAD).id == 3 and box.restarts() == 1
    done = threading.Event()

    def waiting():
        box.next(3)  # done with 3: waits for the next command
        done.set()

    thread = threading.Thread(target=waiting, daemon=True)
    thread.start()
    assert not done.wait(0.05)
    box.post(Posted(4, "score"))
    assert done.wait(5)


def test_an_error_of_one_rank_answers_at_once():
    box = Mailbox()
    error = DataError("bad row", path="part-0", row=3)
    box.reply(LOAD, Member(1, 2, token=0), error)  # rank 0 may wait for rank 1 forever
    assert box.collect(LOAD, timeout=0.01) == [error]


def test_progress_is_kept_per_command_up_to_its_first_gap():
    box = Mailbox()
    box.save_progress(5, 0, ["a", "b"])
    box.save_progress(5, 3, ["d"])  # number 2 never arrived
    assert box.saved_progress(5) == ["a", "b"]
    box.save_progress(5, 1, ["B", "c"])  # a replay that diverged at 1 replaces from there
    assert box.saved_progress(5) == ["a", "B", "c", "d"]
    assert box.saved_progress(6) == []


def test_serve_answers_until_stop_and_replies_errors():
    box = Mailbox()
    client = MailboxClient(box)
    member = Member(0, 1, token=7)

    def handle(posted):
        if posted.command == "bad":
            raise DataError("no such column", column="x")
        return posted.command.upper()

    worker = threading.Thread(target=serve, args=(client, member, handle), daemon=True)
    worker.start()
    box.post(Posted(1, "fit"))
    assert box.collect(1, timeout=5) == ["FIT"]
    box.post(Posted(2, "bad"))
    (reply,) = box.collect(2, timeout=5)
    assert isinstance(reply, DataError) and reply.column == "x"
    box.post(Posted("stop", Stop()))
    worker.join(5)
    assert not worker.is_alive()


def test_client_is_local_without_an_actor():
    from raymix.engine.mailbox import open_mailbox

    assert open_mailbox(remote=False).local
