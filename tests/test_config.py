"""Each config fact lives in one place (docs/design.md §2): model presets in conf/model/,
probe hyperparameters and their defaults in conf/probe/, the keys every entry point shares in
conf/common/default.yaml. These tests keep the copies that code still needs from drifting."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from probegen.model_spec import PRESETS, ModelSpec, load_presets
from probegen.probes import PROBES

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
ENTRY_POINTS = ("extract", "probe", "aggregate", "demo")
CACHE = "${oc.env:PROBEGEN_CACHE,cache}"
NOW = "${now:%Y-%m-%d}/${now:%H-%M-%S}"


def composed(config: str, *overrides: str, hydra: bool = False) -> DictConfig:
    """`config` as its entry point composes it (with the `hydra` node when asked)."""
    with initialize_config_dir(str(CONF), version_base="1.3", job_name=config):
        return compose(config, overrides=list(overrides), return_hydra_config=hydra)


def typed(values: dict) -> dict:
    """Values with their exact types, so 1 vs 1.0 and None vs "null" count as different."""
    return {key: (type(value).__name__, value) for key, value in values.items()}


# --- probes: conf/probe/<name>.yaml holds the estimator's hyperparameters and defaults


def test_every_probe_has_a_yaml_and_nothing_else_does():
    assert {p.stem for p in (CONF / "probe").glob("*.yaml")} == set(PROBES)


@pytest.mark.parametrize("name", sorted(PROBES))
def test_probe_yaml_params_are_the_estimators_defaults(name):
    values = OmegaConf.to_container(OmegaConf.load(CONF / "probe" / f"{name}.yaml"))
    assert values["name"] == name
    assert typed(values["params"]) == typed(PROBES[name]().get_params())


@pytest.mark.parametrize("name", sorted(PROBES))
def test_composed_params_build_the_default_estimator(name):
    cfg = composed("probe", f"probe={name}")
    params = OmegaConf.to_container(cfg.probe.params, resolve=True)
    assert typed(PROBES[name](**params).get_params()) == typed(PROBES[name]().get_params())


def test_a_hyperparameter_overrides_without_plus():
    params = composed("probe", "probe=lr", "probe.params.C=0.1").probe.params
    assert params.C == 0.1 and params.max_iter == 200  # the others keep their defaults
    assert PROBES["lr"](**params).C == 0.1
    nested = composed("probe", "probe=ccs-sub", "probe.params.n_components=8").probe.params
    assert nested.n_components == 8 and isinstance(nested.n_components, int)


def test_an_unknown_hyperparameter_is_a_clear_error():
    with pytest.raises(ConfigCompositionException, match="probe.params.nope") as err:
        composed("probe", "probe=lr", "probe.params.nope=1")
    assert "nope" in str(err.value.__cause__)  # Hydra's struct error names the key
    # and one smuggled past Hydra (`+`) is the estimator's set_params error
    params = OmegaConf.to_container(composed("probe", "+probe.params.nope=1").probe.params)
    with pytest.raises(ValueError, match="nope"):
        PROBES["lr"]().set_params(**params)


# --- models: conf/model/<name>.yaml is the preset


def test_presets_are_read_from_the_model_yamls():
    files = {p.stem: yaml.safe_load(p.read_text()) for p in (CONF / "model").glob("*.yaml")}
    assert set(files) == set(PRESETS) == set(load_presets(CONF))
    keys = {"name", "hf_id", "path", "revision", "dtype", "device", "loader"}
    for name, values in files.items():
        assert set(values) == keys and values["name"] == name and values["path"] is None
        assert (PRESETS[name].hf_id, PRESETS[name].loader) == (values["hf_id"], values["loader"])


def test_a_preset_file_must_name_itself(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.yaml").write_text("name: other\nhf_id: a/b\nloader: hub")
    with pytest.raises(ValueError, match="mine"):
        load_presets(tmp_path)


def test_the_composed_model_node_resolves_to_its_preset():
    for name in PRESETS:
        model = OmegaConf.to_container(composed("extract", f"model={name}").model)
        spec = ModelSpec.from_values(**model)
        assert (spec.name, spec.hf_id, spec.loader) == (
            name,
            PRESETS[name].hf_id,
            PRESETS[name].loader,
        )


def test_the_loader_is_a_fact_not_a_setting():
    with pytest.raises(ValueError, match="model.loader='hub'"):
        ModelSpec.from_values(**composed("extract", "model.loader=hub").model)
    assert ModelSpec.from_values(**composed("extract", "model=4b").model).loader == "hub"
    # a custom model derived from the (GGUF) default preset loads through the hub loader
    custom = composed("extract", "model.hf_id=org/lm").model
    assert custom.loader == "gguf" and ModelSpec.from_values(**custom).loader == "hub"


# --- the keys the entry points share: conf/common/default.yaml


def test_shared_keys_are_not_repeated_in_the_entry_points():
    for name in ENTRY_POINTS:
        own = yaml.safe_load((CONF / f"{name}.yaml").read_text())
        assert own["defaults"][0] == {"common": "default"}
        assert "chdir" not in own.get("hydra", {}).get("job", {})
        assert not any(isinstance(d, dict) and "model" in d for d in own["defaults"])
        assert ("cache_dir" in own) == (name == "demo")  # the demo keeps its own cache


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_entry_points_compose_with_their_old_defaults(name):
    cfg = composed(name, hydra=True)
    assert cfg.hydra.job.chdir is False
    assert cfg.hydra.runtime.choices.model == "smollm2-135m" and cfg.model.name == "smollm2-135m"
    cache = OmegaConf.to_container(cfg)["cache_dir"]
    assert cache == (f"{CACHE}/demo" if name == "demo" else CACHE)
    run_dir = OmegaConf.to_container(cfg.hydra)["run"]["dir"]
    assert run_dir == ("outputs/" if name == "extract" else f"outputs/{name}/") + NOW
    assert composed(name, "model=14b").model.hf_id == "Qwen/Qwen3-14B"


def test_probe_sweep_folder_is_unchanged():
    sweep = OmegaConf.to_container(composed("probe", hydra=True).hydra)["sweep"]
    assert sweep == {
        "dir": f"multirun/${{probegen.model_name:${{model}}}}/{NOW}",
        "subdir": "${hydra.job.num}",
    }
