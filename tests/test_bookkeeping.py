"""The shared job bookkeeping: parameters, commit markers, and accounting that must close."""

from __future__ import annotations

import pytest

from dampeml.bookkeeping import AccountingError, Ledger, check_accounting
from dampeml.errors import JobError
from dampeml.storage import Store

pytestmark = pytest.mark.timeout(60)


def test_a_ledger_records_the_start_and_each_committed_unit(tmp_path):
    ledger = Ledger(Store.open(str(tmp_path / "out")), "_job.json", "_done")
    assert ledger.started() is None and ledger.done() == set()
    ledger.start({"alias": "production", "n": 3})
    ledger.commit("unit-b", {"read": 5})
    ledger.commit("unit-a", {"read": 7})
    again = Ledger(Store.open(str(tmp_path / "out")), "_job.json", "_done")  # a rerun reads it back
    assert again.started() == {"alias": "production", "n": 3}
    assert again.done() == {"unit-a", "unit-b"} and again.marker("unit-a") == {"read": 7}
    assert not list((tmp_path / "out").glob("_tmp/*"))  # every write went through a rename
    again.clear()
    assert again.started() is None and again.done() == set()


def test_accounting_that_does_not_close_is_a_job_error_naming_every_part():
    check_accounting("unit 3", 10, written=7, filtered=2, quarantined=1)
    with pytest.raises(
        AccountingError, match=r"unit 3: .*read 10 != written 7 \+ filtered 2 \+ quarantined 0"
    ):
        check_accounting("unit 3", 10, written=7, filtered=2, quarantined=0)
    assert issubclass(AccountingError, JobError)
