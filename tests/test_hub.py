"""torch.hub: hubconf.py at the repository root loads the released weights."""

from pathlib import Path

import pytest
import torch

from lenet1998.results import RELEASED, load_pretrained

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("variant", ["paper", "modern"])
def test_torch_hub_loads_the_released_model(variant):
    if not (RELEASED / variant / "checkpoint.pt").is_file():
        pytest.skip(f"no released {variant}")
    model = torch.hub.load(str(REPO), "lenet5", source="local", variant=variant)
    reference = load_pretrained(variant)
    assert model.manifest == reference.manifest
    for (name, a), (_, b) in zip(model.named_parameters(), reference.named_parameters()):
        assert torch.equal(a, b), name
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_torch_hub_lists_lenet5_and_an_untrained_model_has_the_release_config():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    assert callable(hubconf.lenet5) and "torch" in hubconf.dependencies
    fresh = torch.hub.load(str(REPO), "lenet5", source="local", variant="paper", pretrained=False)
    assert fresh.config == load_pretrained("paper").config
