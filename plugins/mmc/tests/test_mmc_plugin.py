from toolkit_core.testing import check_kernel, check_method


def test_contract():
    check_method("mmc")


def test_knn_kernel_matches_reference():
    report = check_kernel("torchtrust_mmc::knn", "torchtrust_mmc.knn")
    assert len(report) == 3 and all(r["max_abs_err"] < 1e-5 for r in report)
