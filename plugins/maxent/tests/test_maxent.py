"""Contract of the `maxent` plugin (numbers are checked in tests/test_generalization_metrics.py)."""

from toolkit_core.catalog import get_info
from toolkit_core.testing import check_method


def test_maxent_contract_and_provider():
    check_method("maxent")
    info = get_info("maxent")
    assert info.provider == "torchtrust-maxent"
