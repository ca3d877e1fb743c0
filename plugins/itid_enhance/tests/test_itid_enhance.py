"""Contract of the `itid_enhance` plugin (numbers are checked in tests/test_generalization_metrics.py)."""

from toolkit_core.catalog import get_info
from toolkit_core.testing import check_method


def test_itid_enhance_contract_and_provider():
    check_method("itid_enhance")
    info = get_info("itid_enhance")
    assert info.provider == "torchtrust-itid-enhance"
