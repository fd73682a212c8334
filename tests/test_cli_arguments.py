"""vit-study's argument parsing: KEY=VALUE overrides are taken wherever they sit among the options (a user writes
``finetune --config c.yaml model.name=vit-pi/4 --run-name x sweep.lrs=[0.03]``), and anything else unknown fails."""

import pytest

from pipelines.cli import build_parser, parse_arguments


def _parse(*argv):
    parser, _ = build_parser(list(argv))
    return parse_arguments(parser, list(argv))


def test_overrides_between_options_are_all_kept_in_order():
    args = _parse("train", "--config", "c.yaml", "model.name=vit-pi/4", "--run-name", "x", "sweep.lrs=[0.03]",
                  "optim.lr=1e-3")
    assert args.overrides == ["model.name=vit-pi/4", "sweep.lrs=[0.03]", "optim.lr=1e-3"]
    assert (args.config, args.run_name) == ("c.yaml", "x")


def test_an_unknown_option_or_a_bare_word_still_fails(capsys):
    for argv in (("train", "--config", "c", "a=1", "--run-name", "x", "--nope"),
                 ("train", "--config", "c", "a=1", "--run-name", "x", "stray")):
        with pytest.raises(SystemExit) as info:
            _parse(*argv)
        assert info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_a_command_without_overrides_refuses_them(capsys):
    with pytest.raises(SystemExit):
        _parse("inspect", "--checkpoint", "m", "--out", "o", "a=1")
    assert "unrecognized arguments: a=1" in capsys.readouterr().err
