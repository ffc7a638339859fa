"""What the command line says when it is interrupted: how to resume a fit that checkpointed."""

from __future__ import annotations

from raymix.cli import interrupted


def test_an_interrupt_names_the_resume_command_once_a_checkpoint_exists(tmp_path):
    out = tmp_path / "out dir"
    assert interrupted(None) == "raymix: interrupted"
    assert interrupted(str(out)) == "raymix: interrupted"  # nothing saved yet: nothing to resume
    (out / "checkpoint").mkdir(parents=True)
    (out / "checkpoint" / "state.json").write_text("{}")
    assert interrupted(str(out)) == (
        f"raymix: interrupted; continue from the last checkpoint with: raymix fit --resume '{out}'"
    )
