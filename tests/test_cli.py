import pytest

from transferlab.cli import main


def test_bad_parameter_is_one_line_error(capsys):
    assert main(["run", "fe_vs_ft", "--profile", "ci", "-p", "pretrain_epochs=-3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: The 'pretrain.train.epochs' parameter") and "\n" not in err


@pytest.mark.parametrize("argv, fragment", [
    (["run", "nope"], "'finding' parameter must be one of"),
    (["run", "fe_vs_ft", "--profile", "huge"], "'profile' parameter must be one of"),
    (["run", "fe_vs_ft", "-p", "seeds"], "key=value"),
])
def test_bad_invocations(argv, fragment, capsys):
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err


def test_info_and_empty_zoo(capsys):
    assert main(["info"]) == 0
    assert '"torch"' in capsys.readouterr().out
    assert main(["zoo", "list"]) == 0
    assert "empty" in capsys.readouterr().out
