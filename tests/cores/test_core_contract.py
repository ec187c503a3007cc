"""The core contract, held over every core of conf/model/ (every kind of CORES and the book's MLP): a new
file there is covered by itself. A core maps (batch, time, features) and a state to outputs and a new
state that continues the series; it declares its hidden-to-hidden weights (rnnlab.models.cores.
recurrent_weight_names), which module.weight_drop masks, or declares none and weight drop is refused."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from torch.func import functional_call
from torch.nn import functional as F

from conftest import CONF
from rnnlab.errors import ConfigError
from rnnlab.models.cores import CORES, output_size, recurrent_weight_names, weight_drop_names
from rnnlab.models.forecaster import Forecaster
from rnnlab.models.spec import core_from_spec, plain_spec

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
SMALL = {"hidden_size": 5, "num_layers": 2, "tau": 3}  # tiny sizes, where the core takes them
FEATURES, BATCH, TIME = 3, 2, 7


def model_specs() -> dict[str, dict]:
    """Every conf/model/<name>.yaml as Hydra composes it (its defaults list included), with tiny sizes, as the
    plain spec the LightningModules build their core from (the MLP's `tau: ${data.tau}` set here)."""
    specs = {}
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for name in MODELS:
            spec = OmegaConf.to_container(compose(f"model/{name}").model, resolve=False)
            spec.update({k: v for k, v in SMALL.items() if k in spec})
            assert "${" not in str(spec), spec  # an interpolation to another group: give it a tiny value in SMALL
            specs[name] = plain_spec(spec)
    return specs


@pytest.fixture(scope="module")
def specs():
    return model_specs()


def build(spec: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return core_from_spec(spec, input_size=FEATURES).double()


def flat(state) -> torch.Tensor:
    return torch.cat([s.flatten() for s in state]) if isinstance(state, tuple) else state.flatten()


def test_every_kind_has_a_model_file(specs):
    kinds = {spec.get("kind") for spec in specs.values()}
    assert set(CORES) <= kinds


@pytest.mark.parametrize("name", MODELS)
def test_core_honours_the_contract(name, specs):
    core = build(specs[name])
    x = torch.randn(BATCH, TIME, FEATURES, dtype=torch.double)
    out, state = core(x, None)
    # outputs: one per step, as wide as the head reads (a Forecaster predicts the C columns itself)
    width = FEATURES if isinstance(core, Forecaster) else output_size(core)
    assert out.shape == (BATCH, TIME, width)
    if not isinstance(core, Forecaster):  # torch.nn.RNN's state layout: (layers * directions, batch, hidden)
        layout = (core.num_layers * (2 if core.bidirectional else 1), BATCH, core.hidden_size)
        assert all(s.shape == layout for s in (state if isinstance(state, tuple) else (state,)))
    # the state continues the series: two chunks with the state carried are one pass
    out1, state1 = core(x[:, :3], None)
    out2, state2 = core(x[:, 3:], state1)
    torch.testing.assert_close(torch.cat([out1, out2], 1), out)
    torch.testing.assert_close(flat(state2), flat(state))

    names = recurrent_weight_names(core)
    assert weight_drop_names(core, 0.0) == []
    if not names:  # declares no recurrent weights: weight drop is refused, not ignored
        with pytest.raises(ConfigError, match=r"^module\.weight_drop=0\.2 is invalid: the core \S+ declares no "
                                              r"recurrent \(hidden-to-hidden\) weights to drop"):
            weight_drop_names(core, 0.2)
        return
    assert weight_drop_names(core, 0.2) == names
    params = dict(core.named_parameters())
    assert set(names) <= set(params) and len(names) == core.num_layers * (2 if core.bidirectional else 1)
    # hidden-to-hidden: zeroing them leaves the first step (from a zero state) as it was, and changes the
    # rest; masking them as the language model does (dropout, training) changes the outputs
    zeroed, _ = functional_call(core, {n: torch.zeros_like(params[n]) for n in names}, (x, None))
    torch.testing.assert_close(zeroed[:, 0], out[:, 0])
    assert not torch.allclose(zeroed[:, 1:], out[:, 1:])
    dropped, _ = functional_call(core, {n: F.dropout(params[n], 0.5, training=True) for n in names}, (x, None))
    assert not torch.allclose(dropped[:, 1:], out[:, 1:])


class NoDeclaration(torch.nn.Module):
    """A core with torch.nn.RNN's interface that does not declare its recurrent weights."""

    def __init__(self, input_size: int, hidden_size: int = 4):
        super().__init__()
        self.hidden_size, self.bidirectional = hidden_size, False
        self.rnn = torch.nn.RNN(input_size, hidden_size, batch_first=True)

    def forward(self, x, state=None):
        return self.rnn(x, state)


class WrongDeclaration(NoDeclaration):
    def recurrent_weight_names(self) -> list[str]:
        return ["rnn.weight_hh_l0", "rnn.weight_hh_l9"]


def test_a_core_without_its_recurrent_weights_declared_refuses_weight_drop_in_the_language_model():
    from rnnlab.models import LanguageModel

    target = f"{__name__}.NoDeclaration"
    LanguageModel(core={"_target_": target}, vocab=list("abc"))  # without weight drop it is a core like any
    with pytest.raises(ConfigError) as info:
        LanguageModel(core={"_target_": target}, vocab=list("abc"), weight_drop=0.3)
    assert str(info.value) == (f"module.weight_drop=0.3 is invalid: the core {target} declares no recurrent "
                               "(hidden-to-hidden) weights to drop (a recurrent_weight_names() method); use 0")
    with pytest.raises(ConfigError,
                       match=r"declares recurrent weights that are not its parameters: rnn\.weight_hh_l9$"):
        weight_drop_names(WrongDeclaration(2), 0.3)
