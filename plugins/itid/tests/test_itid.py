"""Contract of the `itid` plugin (numbers are checked in tests/test_generalization_metrics.py)."""

from toolkit_core.catalog import get_info
from toolkit_core.testing import check_method


def test_itid_contract_and_provider():
    check_method("itid")
    info = get_info("itid")
    assert info.provider == "torchtrust-itid"


def test_transform_specs_are_validated():
    import pytest

    from toolkit_core.catalog import create

    with pytest.raises(ValueError, match="unknown transform"):
        create("itid", transforms=("blur=3",))
    with pytest.raises(ValueError, match="at least one transform"):
        create("itid", transforms=())
