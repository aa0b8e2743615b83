"""The pieces every dialog window shares (``tk_client/views/windows.py``) that need no display."""

import stat

from tk_client.views.windows import save_secret_text


def test_a_saved_secret_is_readable_only_by_the_user_and_the_user_is_told_where(tmp_path):
    target = tmp_path / "key.txt"
    saved, said = save_secret_text(str(target), "the secret\n", "The key was not saved")
    assert saved
    assert said == f"Saved to {target} (readable only by you)."
    assert target.read_text() == "the secret\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_secret_that_could_not_be_saved_says_why_and_what_to_do(tmp_path):
    target = tmp_path / "a folder"  # chosen by mistake: a file cannot replace it
    target.mkdir()
    saved, said = save_secret_text(str(target), "codes", "The codes were not saved")
    assert not saved
    assert said == "The codes were not saved (Is a directory). Choose another place."
    assert target.is_dir()
