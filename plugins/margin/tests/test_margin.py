"""Contract of the `margin` plugin (numbers are checked in tests/test_generalization_metrics.py)."""

from toolkit_core.catalog import get_info
from toolkit_core.testing import check_method


def test_margin_contract_and_provider():
    check_method("margin")
    info = get_info("margin")
    assert info.provider == "torchtrust-margin"
