import errno
import re

import pytest

from probes.atomic import DiskFullError, atomic_output


def test_output_appears_only_when_complete(tmp_path):
    out = tmp_path / "sub" / "table.csv"
    with atomic_output(out) as tmp:
        assert tmp.name == "table.part.csv" and tmp.parent == out.parent
        tmp.write_text("a,b\n")
        assert not out.exists()
    assert out.read_text() == "a,b\n" and not tmp.exists()


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    out = tmp_path / "probe.json"
    out.write_text("old")
    with (
        pytest.raises(DiskFullError, match=re.escape(f"{out}: disk full (or over quota) while writing it")),
        atomic_output(out) as tmp,
    ):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert out.read_text() == "old" and list(tmp_path.iterdir()) == [out]


def test_a_quota_error_under_another_exception_is_a_disk_full_error(tmp_path):
    out = tmp_path / "act.h5"
    with pytest.raises(DiskFullError, match="over quota"), atomic_output(out) as tmp:
        tmp.write_text("half")
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError:
            raise RuntimeError("Can't close dataset") from None  # as HDF5's close raises, the cause hidden
    assert list(tmp_path.iterdir()) == []
