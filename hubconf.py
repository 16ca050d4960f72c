"""torch.hub entry points: the released LeNet-5 models of results/released/<variant>/.

    model = torch.hub.load("<owner>/lenet1998", "lenet5", variant="paper")
    model = torch.hub.load("/path/to/lenet1998", "lenet5", source="local", variant="modern")

The model is rebuilt from the release's own config and its weights; its manifest (with the
recorded test error) is `model.manifest`. Inputs: (N, 1, 32, 32) in the config's input coding
(lenet1998.data.encode); `model.predict(model(x))` gives the digits.
"""

dependencies = ["torch", "numpy"]


def lenet5(variant: str = "paper", pretrained: bool = True):
    """LeNet-5 of a released variant ("paper", "modern", "paper+distortions"). pretrained=False:
    the same architecture and config, freshly initialised from its seed."""
    from lenet1998.results import RELEASED, ResultsError, load_pretrained

    if pretrained:
        return load_pretrained(variant)
    import json

    from lenet1998.config import LeNetConfig
    from lenet1998.model import LeNet5

    path = RELEASED / variant / "config.json"
    if not path.is_file():
        raise ResultsError(f"no released variant {variant!r} in {RELEASED}")
    config = {k: v for k, v in json.loads(path.read_text()).items() if k != "label"}
    return LeNet5(LeNetConfig.from_dict(config))
