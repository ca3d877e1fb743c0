"""Contract of the `neural_collapse` plugin (numbers are checked in tests/test_generalization_metrics.py)."""

from toolkit_core.catalog import get_info
from toolkit_core.testing import check_method


def test_neural_collapse_contract_and_provider():
    check_method("neural_collapse")
    info = get_info("neural_collapse")
    assert info.provider == "torchtrust-neural-collapse"
