"""Contract of the `path_norm` plugin (numbers are checked in tests/test_generalization_metrics.py)."""

from toolkit_core.catalog import get_info
from toolkit_core.testing import check_method


def test_path_norm_contract_and_provider():
    check_method("path_norm")
    info = get_info("path_norm")
    assert info.provider == "torchtrust-path-norm"
