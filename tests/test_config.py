import pytest

from transferlab.config import ParameterError, PretrainConfig, apply_overrides, config_hash, validate
from transferlab.findings import fe_vs_ft


def test_profiles_resolve_and_validate():
    for profile in ("ci", "cpu", "gpu"):
        cfg = fe_vs_ft.config(profile, device="cpu")
        assert cfg.seeds >= 1 and cfg.device == "cpu"
    assert fe_vs_ft.config("cpu", device="cpu").seeds >= 3  # CLAIMS.md: seeds >= 3


@pytest.mark.parametrize("params, fragment", [
    ({"pretrain_epochs": -1}, "'pretrain.train.epochs' parameter must be an int in the range [1"),
    ({"arch": "alexnet"}, "'pretrain.model.arch' parameter must be one of ['resnet', 'vit']"),
    ({"source": "pixels"}, "'pretrain.source' parameter must be one of"),
    ({"source": "imagenet"}, "'pretrain.source' parameter 'imagenet' needs the ImageNet data set files"),
    ({"ft_lrs": []}, "'ft_lrs' parameter must be a non-empty list"),
    ({"bogus": 1}, "Unknown parameter 'bogus'"),
])
def test_bad_parameters_name_the_parameter(params, fragment):
    with pytest.raises(ParameterError) as err:
        fe_vs_ft.config("ci", **params)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_paper_profile_explains_itself():
    with pytest.raises(ParameterError, match="'paper' \\(real data sets and hub weights\\) is not defined for finding 02"):
        fe_vs_ft.config("paper")


def test_hash_is_stable_and_sensitive():
    a = validate(PretrainConfig())
    assert config_hash(a) == config_hash(validate(PretrainConfig()))
    b = apply_overrides(a, {"train.epochs": 4})
    assert config_hash(a) != config_hash(b)


def test_none_means_profile_value():
    assert fe_vs_ft.config("ci", seeds=None, device="cpu") == fe_vs_ft.config("ci", device="cpu")


def test_an_unknown_name_lists_what_the_user_may_give():
    from transferlab.findings import cross

    with pytest.raises(ParameterError) as err:
        fe_vs_ft.config("ci", target_tran=100)
    assert "Did you mean 'target_train'?" in str(err.value) and "'ft_epochs'" in str(err.value)
    with pytest.raises(ParameterError) as err:
        cross.config("ci", x=1)
    message = str(err.value)
    # cross takes pretraining settings once, for all four findings; the per-finding names it refuses are not offered
    assert "'pretrain.<name>'" in message and "'pretrain_epochs'" in message and "'stir_images'" in message
    assert ".pretrain." not in message and "'fe_vs_ft.ft_lrs'" in message
