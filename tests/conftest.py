import pytest

from verif.runner import SIMULATORS, simulator_status


@pytest.fixture(params=SIMULATORS)
def simulator(request):
    """Each cocotb bench runs once per simulator; a missing simulator is skipped with the reason."""
    available, reason = simulator_status(request.param)
    if not available:
        pytest.skip(reason)
    return request.param
