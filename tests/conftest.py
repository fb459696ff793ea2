import pytest
import torch


@pytest.fixture(autouse=True)
def _float64_and_seed():
    """Each test starts with float64 as default dtype and a fixed seed, and restores the dtype after."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)
