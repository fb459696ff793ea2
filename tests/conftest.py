import pytest
import torch


@pytest.fixture(autouse=True)
def _float64_and_seed():
    """Each test starts with float64 as default dtype and a fixed seed, and restores the dtype after."""
    old = torch.get_default_dtype()
    threads = torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    # Tests use small tensors, for which a second thread costs more than it gives (and timings are not
    # measured here: benchmarks/ does that).
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)
    torch.set_num_threads(threads)
